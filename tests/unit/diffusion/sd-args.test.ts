import path from "node:path";
import { describe, expect, it } from "vitest";
import { InvalidGenerationParamsError } from "../../../src/diffusion/errors.js";
import {
  resolveGenerationParams,
  type GenerationRequest,
} from "../../../src/diffusion/generation-request.js";
import { buildSdArgs } from "../../../src/diffusion/sd-args.js";
import { ModelRegistry } from "../../../src/models/index.js";

const modelsDir = "/models";
const registry = new ModelRegistry({ modelsDir, defaultModel: "sd15" });
const out = "/out/20250101T000000000Z-abcd.png";

function argsFor(model: string, request: Partial<GenerationRequest> = {}, extra: Partial<Parameters<typeof buildSdArgs>[2]> = {}) {
  const entry = registry.resolve(model);
  const params = resolveGenerationParams({ prompt: "a cat", seed: 42, ...request }, entry);
  return buildSdArgs(params, registry.files(entry), { outputPath: out, extraArgs: [], ...extra });
}

/** The value following a flag, or undefined when the flag is absent. */
function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i === -1 ? undefined : args[i + 1];
}

function expectInvalid(fn: () => unknown, param: string): InvalidGenerationParamsError {
  let error: unknown;
  try {
    fn();
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(InvalidGenerationParamsError);
  expect((error as InvalidGenerationParamsError).param).toBe(param);
  expect((error as Error).message).toContain(param);
  return error as InvalidGenerationParamsError;
}

describe("buildSdArgs for the built-in models", () => {
  it("sd15: one checkpoint with -m and its defaults", () => {
    const args = argsFor("sd15");
    expect(args).toEqual([
      "-m", path.join(modelsDir, "v1-5-pruned-emaonly.safetensors"),
      "-p", "a cat",
      "-W", "512", "-H", "512",
      "--steps", "20",
      "--cfg-scale", "7",
      "--sampling-method", "euler_a",
      "-s", "42",
      "-o", out,
    ]);
  });

  it("sdxl: checkpoint plus its VAE, 1024x1024", () => {
    const args = argsFor("sdxl");
    expect(flag(args, "-m")).toBe(path.join(modelsDir, "sd_xl_base_1.0.safetensors"));
    expect(flag(args, "--vae")).toBe(path.join(modelsDir, "sdxl_vae.safetensors"));
    expect([flag(args, "-W"), flag(args, "-H")]).toEqual(["1024", "1024"]);
    expect(args).not.toContain("--guidance");
  });

  it("sd3: cfg 4.5, euler, 28 steps", () => {
    const args = argsFor("sd3");
    expect(flag(args, "-m")).toBe(path.join(modelsDir, "sd3_medium_incl_clips_t5xxlfp16.safetensors"));
    expect(flag(args, "--cfg-scale")).toBe("4.5");
    expect(flag(args, "--sampling-method")).toBe("euler");
    expect(flag(args, "--steps")).toBe("28");
  });

  it("flux-schnell: split files, cfg 1, 4 steps, no --guidance", () => {
    const args = argsFor("flux-schnell");
    expect(args).not.toContain("-m");
    expect(flag(args, "--diffusion-model")).toBe(path.join(modelsDir, "flux1-schnell-q8_0.gguf"));
    expect(flag(args, "--vae")).toBe(path.join(modelsDir, "ae.safetensors"));
    expect(flag(args, "--clip_l")).toBe(path.join(modelsDir, "clip_l.safetensors"));
    expect(flag(args, "--t5xxl")).toBe(path.join(modelsDir, "t5xxl_fp16.safetensors"));
    expect(flag(args, "--cfg-scale")).toBe("1");
    expect(flag(args, "--steps")).toBe("4");
    expect(flag(args, "--sampling-method")).toBe("euler");
    expect(args).not.toContain("--guidance");
  });

  it("flux-dev: the same files layout plus --guidance 3.5", () => {
    const args = argsFor("flux-dev");
    expect(flag(args, "--diffusion-model")).toBe(path.join(modelsDir, "flux1-dev-q8_0.gguf"));
    expect(flag(args, "--cfg-scale")).toBe("1");
    expect(flag(args, "--guidance")).toBe("3.5");
    expect(flag(args, "--steps")).toBe("20");
  });

  it("drops --guidance for families without distilled guidance", () => {
    expect(argsFor("sdxl", { guidance: 5 })).not.toContain("--guidance");
    expect(flag(argsFor("flux-schnell", { guidance: 2.5 }), "--guidance")).toBe("2.5");
  });

  it("passes every request value with String() formatting", () => {
    const args = argsFor("sdxl", {
      negativePrompt: "blurry",
      width: 768,
      height: 1280,
      steps: 30,
      cfgScale: 6.5,
      samplingMethod: "dpm++2m",
      scheduler: "karras",
      seed: 1234,
      batchCount: 3,
      vaeTiling: true,
    }, { threads: 6 });
    expect(flag(args, "-n")).toBe("blurry");
    expect([flag(args, "-W"), flag(args, "-H")]).toEqual(["768", "1280"]);
    expect(flag(args, "--steps")).toBe("30");
    expect(flag(args, "--cfg-scale")).toBe("6.5");
    expect(flag(args, "--sampling-method")).toBe("dpm++2m");
    expect(flag(args, "--scheduler")).toBe("karras");
    expect(flag(args, "-s")).toBe("1234");
    expect(flag(args, "-b")).toBe("3");
    expect(flag(args, "-t")).toBe("6");
    expect(args).toContain("--vae-tiling");
  });

  it("passes --clip-skip only when asked: sd.cpp otherwise picks it by model family", () => {
    expect(flag(argsFor("sd15", { clipSkip: 2 }), "--clip-skip")).toBe("2");
    expect(argsFor("sd15")).not.toContain("--clip-skip");
  });

  it("keeps the prompt one argument, whatever it contains", () => {
    const prompt = `"; rm -rf / #  $(whoami) (masterpiece:1.2) [x] {y} <z>`;
    const args = argsFor("sd15", { prompt });
    expect(flag(args, "-p")).toBe(prompt);
  });

  it("never passes a random seed through: it draws one and reports it", () => {
    const entry = registry.resolve("sd15");
    const params = resolveGenerationParams({ prompt: "x", seed: -1 }, entry, { randomSeed: () => 987654 });
    expect(params).toMatchObject({ seed: 987654, randomSeed: true });
    expect(flag(buildSdArgs(params, registry.files(entry), { outputPath: out }), "-s")).toBe("987654");
    const drawn = resolveGenerationParams({ prompt: "x" }, entry);
    expect(drawn.randomSeed).toBe(true);
    expect(Number.isInteger(drawn.seed) && drawn.seed >= 0).toBe(true);
  });
});

describe("buildSdArgs options", () => {
  it("img2img adds -i and --strength", () => {
    const args = argsFor("sd15", { initImage: "/in/photo.png", strength: 0.4 });
    expect(flag(args, "-i")).toBe("/in/photo.png");
    expect(flag(args, "--strength")).toBe("0.4");
    expect(flag(argsFor("sd15", { initImage: "/in/photo.png" }), "--strength")).toBe("0.75");
    expect(argsFor("sd15", { strength: 0.4 })).not.toContain("--strength");
  });

  it("adds --lora-model-dir only when the prompt names a LoRA", () => {
    expect(argsFor("sd15", {}, { loraDir: "/loras" })).not.toContain("--lora-model-dir");
    const args = argsFor("sd15", { prompt: "a cat <lora:pixel-art:0.8>" }, { loraDir: "/loras" });
    expect(flag(args, "--lora-model-dir")).toBe("/loras");
    expect(flag(args, "-p")).toBe("a cat <lora:pixel-art:0.8>");
  });

  it("refuses LoRA names that would leave the LoRA directory", () => {
    for (const prompt of ["<lora:../secret:1>", "<lora:a/b:1>", "<lora:a\\b:1>", "<lora:..:1>", "<lora::1>"]) {
      expectInvalid(() => argsFor("sd15", { prompt }, { loraDir: "/loras" }), "prompt");
    }
    expectInvalid(() => argsFor("sd15", { prompt: "<lora:style:abc>" }, { loraDir: "/loras" }), "prompt");
  });

  it("refuses a LoRA when no LoRA directory is configured", () => {
    expectInvalid(() => argsFor("sd15", { prompt: "<lora:style:1>" }, { loraDir: undefined }), "prompt");
  });

  it("adds the preview flags and then the extra args, without --color", () => {
    const args = argsFor("sd15", {}, {
      previewPath: "/out/p.png",
      previewMode: "vae",
      extraArgs: ["--diffusion-fa", "--color", "--offload-to-cpu"],
    });
    expect(args.slice(-8)).toEqual([
      "-o", out,
      "--preview", "vae", "--preview-path", "/out/p.png",
      "--diffusion-fa", "--offload-to-cpu",
    ]);
    expect(args).not.toContain("--color");
    expect(flag(argsFor("sd15", {}, { previewPath: "/out/p.png" }), "--preview")).toBe("proj");
  });

  it("refuses a non-finite number even when handed unvalidated params", () => {
    const entry = registry.resolve("sd15");
    const params = { ...resolveGenerationParams({ prompt: "x", seed: 1 }, entry), steps: Number.NaN };
    expectInvalid(() => buildSdArgs(params, registry.files(entry), { outputPath: out }), "steps");
  });
});

describe("invalid generation params", () => {
  const sd15 = registry.resolve("sd15");
  const flux = registry.resolve("flux-schnell");
  const resolve = (request: Record<string, unknown>, entry = sd15) =>
    resolveGenerationParams({ prompt: "a cat", ...request } as GenerationRequest, entry);

  const cases: [Record<string, unknown>, string][] = [
    [{ width: 100 }, "width"],
    [{ height: 500 }, "height"],
    [{ width: 2048 }, "width"], // sd15's limit is 1024
    [{ width: 0 }, "width"],
    [{ width: 512.5 }, "width"],
    [{ steps: 0 }, "steps"],
    [{ steps: "abc" }, "steps"],
    [{ steps: Number.NaN }, "steps"],
    [{ steps: Number.POSITIVE_INFINITY }, "steps"],
    [{ steps: 151 }, "steps"],
    [{ cfgScale: 99 }, "cfgScale"],
    [{ cfgScale: -1 }, "cfgScale"],
    [{ cfgScale: "7x" }, "cfgScale"],
    [{ guidance: 50 }, "guidance"],
    [{ seed: 1.5 }, "seed"],
    [{ seed: -2 }, "seed"],
    [{ seed: "random" }, "seed"],
    [{ batchCount: 9 }, "batchCount"],
    [{ batchCount: 0 }, "batchCount"],
    [{ strength: 1.5 }, "strength"],
    [{ samplingMethod: "bogus_sampler" }, "samplingMethod"],
    [{ scheduler: "linear" }, "scheduler"],
    [{ prompt: "a\0cat" }, "prompt"],
    [{ prompt: "   " }, "prompt"],
    [{ prompt: "x".repeat(8001) }, "prompt"],
    [{ prompt: 42 }, "prompt"],
    [{ negativePrompt: "bad\0" }, "negativePrompt"],
    [{ initImage: "/in\0.png" }, "initImage"],
    [{ vaeTiling: "maybe" }, "vaeTiling"],
    [{ clipSkip: 0 }, "clipSkip"],
    [{ clipSkip: 1.5 }, "clipSkip"],
    [{ cfg_scale: 7 }, "cfg_scale"],
  ];
  const label = (request: Record<string, unknown>) => {
    const text = JSON.stringify(request, (_, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v));
    return text.length > 40 ? `${text.slice(0, 37)}...` : text;
  };
  it.each(cases.map(([request, param]) => [label(request), param, request] as const))("%s is refused naming %s", (_, param, request) => {
    expectInvalid(() => resolve(request), param);
  });

  it("enforces the model's own step limit", () => {
    const error = expectInvalid(() => resolve({ steps: 60 }, flux), "steps");
    expect(error.message).toContain("50");
    expect(resolve({ steps: 60 }).steps).toBe(60);
  });

  it("accepts numbers sent as strings (form posts)", () => {
    expect(resolve({ width: "768", steps: "25", cfgScale: "5.5", seed: "7", vaeTiling: "true" })).toMatchObject({
      width: 768,
      steps: 25,
      cfgScale: 5.5,
      seed: 7,
      vaeTiling: true,
    });
  });

  it("explains the size rule in the message", () => {
    const error = expectInvalid(() => resolve({ width: 100 }), "width");
    expect(error.message).toMatch(/multiple of 64 between 64 and 1024/);
  });
});
