import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { builtinModels, ModelRegistry } from "../../src/models/index.js";
import {
  assetStem,
  authHeadersFor,
  builtinModelSources,
  detectVariant,
  effectiveUrl,
  hfEnv,
  loadModelSources,
  ModelSourcesError,
  NoReleaseAssetError,
  repoPageOf,
  resolveReleaseAsset,
  sdCppRelease,
  sourceFor,
  type ProbeRunner,
} from "../../src/setup/index.js";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-sources-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("model sources", () => {
  it("give every file of every built-in model a source named like the file", () => {
    const registry = new ModelRegistry({ modelsDir: dir, defaultModel: "sd15" });
    const catalog = loadModelSources();
    for (const model of builtinModels) {
      const entry = registry.resolve(model.name);
      for (const file of registry.files(entry)) {
        const source = sourceFor(catalog, entry, file.role);
        expect(source, `${model.name} ${file.role}`).toBeDefined();
        expect(path.posix.basename(new URL(source!.url).pathname)).toBe(path.basename(file.path));
        expect(source!.url).toMatch(/^https:\/\/huggingface\.co\/[^/]+\/[^/]+\/resolve\/main\//);
      }
      expect(Object.keys(builtinModelSources[model.name] ?? {}).sort()).toEqual(Object.keys(model.files).sort());
    }
  });

  it("lets MODELS_CONFIG add sources, and finds built-in ones for shared file names", () => {
    const config = path.join(dir, "models.json");
    fs.writeFileSync(
      config,
      JSON.stringify({
        models: [
          {
            name: "my-flux",
            family: "flux",
            files: { diffusionModel: "my-flux.gguf", vae: "ae.safetensors", clipL: "clip_l.safetensors", t5xxl: "t5xxl_fp16.safetensors" },
            defaults: { steps: 4, cfgScale: 1, samplingMethod: "euler", width: 512, height: 512 },
            sources: { diffusionModel: "https://example.com/my-flux.gguf" },
          },
          // Overriding a built-in's file without a source: the built-in URL (another file) must not be used.
          { name: "sdxl", files: { vae: "my-own-vae.safetensors" } },
        ],
      }),
    );
    const registry = new ModelRegistry({ modelsDir: dir, defaultModel: "sd15", modelsConfig: config });
    const catalog = loadModelSources(config);
    const myFlux = registry.resolve("my-flux");
    expect(sourceFor(catalog, myFlux, "diffusionModel")).toEqual({ url: "https://example.com/my-flux.gguf" });
    expect(sourceFor(catalog, myFlux, "vae")?.url).toBe("https://huggingface.co/black-forest-labs/FLUX.1-schnell/resolve/main/ae.safetensors");
    expect(sourceFor(catalog, registry.resolve("sdxl"), "vae")).toBeUndefined();
    expect(sourceFor(catalog, registry.resolve("sdxl"), "model")?.sha256).toMatch(/^31e35c80/);
  });

  it("rejects a malformed source, naming the entry", () => {
    const config = path.join(dir, "models.json");
    fs.writeFileSync(config, JSON.stringify([{ name: "sd15", sources: { model: { url: "https://x/y", sha256: "abc" } } }]));
    expect(() => loadModelSources(config)).toThrow(ModelSourcesError);
    expect(() => loadModelSources(config)).toThrow(/entry 'sd15': sources: model\.sha256/);
  });
});

describe("Hugging Face helpers", () => {
  it("send HF_TOKEN to Hugging Face (and HF_ENDPOINT) only", () => {
    const hf = hfEnv({ HF_TOKEN: " hf_abc ", HF_ENDPOINT: "https://hf-mirror.example/" });
    expect(authHeadersFor("https://huggingface.co/a/b/resolve/main/c", hf)).toEqual({ Authorization: "Bearer hf_abc" });
    expect(authHeadersFor("https://cdn-lfs.huggingface.co/x", hf)).toEqual({ Authorization: "Bearer hf_abc" });
    expect(authHeadersFor("https://hf-mirror.example/a/b/resolve/main/c", hf)).toEqual({ Authorization: "Bearer hf_abc" });
    expect(authHeadersFor("https://github.com/leejet/stable-diffusion.cpp/releases", hf)).toEqual({});
    expect(authHeadersFor("https://evil-huggingface.co/x", hf)).toEqual({});
    expect(authHeadersFor("https://huggingface.co/x", hfEnv({}))).toEqual({});
  });

  it("move huggingface.co URLs to HF_ENDPOINT and find the repository page", () => {
    const hf = hfEnv({ HF_ENDPOINT: "https://hf-mirror.example/" });
    expect(effectiveUrl("https://huggingface.co/a/b/resolve/main/c.gguf", hf)).toBe("https://hf-mirror.example/a/b/resolve/main/c.gguf");
    expect(effectiveUrl("https://example.com/c.gguf", hf)).toBe("https://example.com/c.gguf");
    expect(repoPageOf("https://hf-mirror.example/stabilityai/stable-diffusion-3-medium/resolve/main/x.safetensors")).toBe(
      "https://huggingface.co/stabilityai/stable-diffusion-3-medium",
    );
  });
});

describe("stable-diffusion.cpp release assets", () => {
  it("derives asset names from the pinned tag as the release workflow names them", () => {
    expect(sdCppRelease.tag).toBe("master-827-97d2990");
    expect(assetStem("master-827-97d2990")).toBe("master-97d2990");
    expect(() => assetStem("v1.0")).toThrow(NoReleaseAssetError);
  });

  it("picks the asset for each platform and variant", () => {
    expect(resolveReleaseAsset("linux", "x64", "cpu")).toEqual({ files: ["sd-master-97d2990-bin-Linux-Ubuntu-24.04-x86_64.zip"], variant: "cpu" });
    expect(resolveReleaseAsset("linux", "x64", "vulkan").files).toEqual(["sd-master-97d2990-bin-Linux-Ubuntu-24.04-x86_64-vulkan.zip"]);
    const detectedCuda = resolveReleaseAsset("linux", "x64", "cuda");
    expect(detectedCuda).toMatchObject({ files: ["sd-master-97d2990-bin-Linux-Ubuntu-24.04-x86_64-vulkan.zip"], variant: "vulkan" });
    expect(detectedCuda.note).toMatch(/no Linux CUDA build/);
    expect(() => resolveReleaseAsset("linux", "x64", "cuda", { explicit: true })).toThrow(/no Linux CUDA build/);
    expect(resolveReleaseAsset("win32", "x64", "cuda").files).toEqual([
      "sd-master-97d2990-bin-win-cuda12-x64.zip",
      "cudart-sd-bin-win-cu12-x64.zip",
    ]);
    expect(resolveReleaseAsset("win32", "x64", "vulkan").files).toEqual(["sd-master-97d2990-bin-win-vulkan-x64.zip"]);
    expect(resolveReleaseAsset("win32", "x64", "cpu").files).toEqual(["sd-master-97d2990-bin-win-cpu-x64.zip"]);
    expect(resolveReleaseAsset("darwin", "arm64", "cpu")).toMatchObject({
      files: ["sd-master-97d2990-bin-Darwin-macOS-26.5.2-arm64.zip"],
      variant: "metal",
    });
    expect(resolveReleaseAsset("linux", "x64", "cpu", { tag: "master-900-abcdef1" }).files).toEqual([
      "sd-master-abcdef1-bin-Linux-Ubuntu-24.04-x86_64.zip",
    ]);
    expect(() => resolveReleaseAsset("linux", "arm64", "cpu")).toThrow(/no build for linux-arm64/);
  });

  it("detects CUDA, then Vulkan (a real GPU), then CPU, running the tools with argv", async () => {
    const calls: string[][] = [];
    const runner =
      (answers: Record<string, { exitCode: number | undefined; stdout: string }>): ProbeRunner =>
      async (bin, args) => {
        calls.push([bin, ...args]);
        return answers[path.basename(bin)] ?? { exitCode: undefined, stdout: "" };
      };
    const gpu = { exitCode: 0, stdout: "GPU 0: NVIDIA GeForce RTX 3070 (UUID: GPU-x)" };
    expect(await detectVariant({ nvidiaSmi: "/usr/bin/nvidia-smi", run: runner({ "nvidia-smi": gpu }) })).toEqual({
      variant: "cuda",
      reason: "/usr/bin/nvidia-smi found GPU 0: NVIDIA GeForce RTX 3070 (UUID: GPU-x)",
    });
    expect(calls[0]).toEqual(["/usr/bin/nvidia-smi", "-L"]);

    // nvidia-smi present but no GPU (driver not loaded): exit code 9, "No devices were found".
    const noDriver = { exitCode: 9, stdout: "No devices were found" };
    const amd = { exitCode: 0, stdout: "deviceType = PHYSICAL_DEVICE_TYPE_DISCRETE_GPU\ndeviceName = AMD Radeon RX 7600" };
    expect(await detectVariant({ run: runner({ "nvidia-smi": noDriver, vulkaninfo: amd }) })).toMatchObject({ variant: "vulkan" });
    expect(calls.at(-1)).toEqual(["vulkaninfo", "--summary"]);

    const llvmpipe = { exitCode: 0, stdout: "deviceType = PHYSICAL_DEVICE_TYPE_CPU\ndeviceName = llvmpipe" };
    expect(await detectVariant({ run: runner({ vulkaninfo: llvmpipe }) })).toMatchObject({ variant: "cpu" });
    expect(await detectVariant({ run: runner({}) })).toMatchObject({ variant: "cpu" });
  });
});
