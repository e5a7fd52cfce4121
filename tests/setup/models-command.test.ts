import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ModelRegistry } from "../../src/models/index.js";
import { startFileServer, type FileServer } from "./helpers/file-server.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const tsx = path.join(root, "node_modules/.bin/tsx");
const cli = path.join(root, "tests/setup/helpers/cli.ts");

const bytes = (seed: string, size: number) => {
  const out = Buffer.alloc(size);
  let block = crypto.createHash("sha256").update(seed).digest();
  for (let i = 0; i < size; i += block.length) {
    block.copy(out, i);
    block = crypto.createHash("sha256").update(block).digest();
  }
  return out;
};
const sha = (b: Buffer) => crypto.createHash("sha256").update(b).digest("hex");

const sd15 = bytes("sd15", 300_000);
const tinyFlux = bytes("tiny-flux", 200_000);
const ae = bytes("ae", 50_000);
const clipL = bytes("clip_l", 40_000);
const t5 = bytes("t5", 60_000);

let dir: string;
let modelsDir: string;
let server: FileServer;

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-models-cmd-"));
  modelsDir = path.join(dir, "models");
  server = await startFileServer();
});
afterEach(async () => {
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function writeModelsConfig(models: unknown[]): string {
  const file = path.join(dir, "models.json");
  fs.writeFileSync(file, JSON.stringify({ models }));
  return file;
}

function diffugen(args: string[], env: Record<string, string> = {}) {
  return execa(tsx, [cli, ...args], {
    cwd: dir,
    reject: false,
    extendEnv: false,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: dir,
      MODELS_DIR: modelsDir,
      DATA_DIR: path.join(dir, "data"),
      ...env,
    },
  });
}

/** sd15 with a local source, and a custom Flux entry whose files (one in a subfolder) come from the local server. */
function localSources(): string {
  server.route("/sd15.safetensors", { body: sd15 });
  server.route("/tiny/flux.gguf", { body: tinyFlux });
  server.route("/tiny/ae.safetensors", { body: ae });
  server.route("/tiny/clip_l.safetensors", { body: clipL });
  server.route("/tiny/t5.safetensors", { body: t5 });
  return writeModelsConfig([
    { name: "sd15", sources: { model: { url: `${server.url}/sd15.safetensors`, sha256: sha(sd15), sizeBytes: sd15.length } } },
    {
      name: "tiny-flux",
      family: "flux",
      description: "a test Flux",
      files: {
        diffusionModel: "flux/tiny-flux.gguf",
        vae: "ae.safetensors",
        clipL: "clip_l.safetensors",
        t5xxl: "t5xxl_fp16.safetensors",
      },
      defaults: { steps: 4, cfgScale: 1, samplingMethod: "euler", width: 512, height: 512 },
      sources: {
        diffusionModel: { url: `${server.url}/tiny/flux.gguf`, sha256: sha(tinyFlux) },
        vae: `${server.url}/tiny/ae.safetensors`,
        clipL: { url: `${server.url}/tiny/clip_l.safetensors` },
        t5xxl: { url: `${server.url}/tiny/t5.safetensors`, sha256: sha(t5) },
      },
    },
  ]);
}

describe("diffugen models", () => {
  it("lists every model's files, marks the missing ones and says where they come from", async () => {
    const modelsConfig = localSources();
    fs.mkdirSync(modelsDir, { recursive: true });
    fs.writeFileSync(path.join(modelsDir, "clip_l.safetensors"), clipL);

    const result = await diffugen(["models"], { MODELS_CONFIG: modelsConfig });
    expect(result.exitCode, result.stderr).toBe(0);
    const out = result.stdout;
    expect(out).toContain("sd15 (default): Stable Diffusion 1.5, 1 of 1 file missing");
    expect(out).toMatch(/missing {2}model +.*v1-5-pruned-emaonly\.safetensors/);
    expect(out).toContain(`from ${server.url}/sd15.safetensors (300 KB, sha256 checked)`);
    // Built-in sources for built-in models, with the gated ones marked.
    expect(out).toContain(
      "from https://huggingface.co/stabilityai/stable-diffusion-3-medium/resolve/main/sd3_medium_incl_clips_t5xxlfp16.safetensors (gated: needs HF_TOKEN)",
    );
    expect(out).toContain("from https://huggingface.co/leejet/FLUX.1-schnell-gguf/resolve/main/flux1-schnell-q8_0.gguf");
    expect(out).toMatch(/✓ +clipL +.*clip_l\.safetensors/);
    expect(out).toContain("tiny-flux: a test Flux, 3 of 4 files missing");
    // The temp folder is outside the checkout: the launcher by its absolute path.
    expect(out).toContain(`Fetch a model's missing files with: node ${path.join(root, "bin", "diffugen.js")} models pull <name>`);
  });

  it("pull puts every missing file where the registry expects it, verified, then lists them as present", async () => {
    const modelsConfig = localSources();
    const env = { MODELS_CONFIG: modelsConfig, HF_TOKEN: "hf_must_not_leak" };

    const pulled = await diffugen(["models", "pull", "sd1.5", "tiny-flux"], env);
    expect(pulled.exitCode, pulled.stderr).toBe(0);
    expect(pulled.stderr).toContain("sha256 verified");
    expect(pulled.stderr).toMatch(/tiny-flux: ready/);

    const registry = new ModelRegistry({ modelsDir, defaultModel: "sd15", modelsConfig });
    const expected: Record<string, Buffer> = {
      "v1-5-pruned-emaonly.safetensors": sd15,
      "flux/tiny-flux.gguf": tinyFlux,
      "ae.safetensors": ae,
      "clip_l.safetensors": clipL,
      "t5xxl_fp16.safetensors": t5,
    };
    for (const entry of [registry.resolve("sd15"), registry.resolve("tiny-flux")]) {
      expect(registry.missingFiles(entry)).toEqual([]);
      for (const file of registry.files(entry)) {
        const name = path.relative(modelsDir, file.path).split(path.sep).join("/");
        expect(fs.readFileSync(file.path).equals(expected[name]!), name).toBe(true);
        expect(fs.existsSync(`${file.path}.part`)).toBe(false);
      }
    }
    // The Hugging Face token goes to Hugging Face only.
    expect(server.requests.every((r) => r.headers.authorization === undefined)).toBe(true);

    const listed = await diffugen(["models", "--json"], env);
    const json = JSON.parse(listed.stdout) as { models: { name: string; ready: boolean }[] };
    expect(json.models.find((m) => m.name === "sd15")?.ready).toBe(true);
    expect(json.models.find((m) => m.name === "tiny-flux")?.ready).toBe(true);
    expect(json.models.find((m) => m.name === "sdxl")?.ready).toBe(false);

    // A second pull has nothing to do.
    const again = await diffugen(["models", "pull", "tiny-flux"], env);
    expect(again.exitCode).toBe(0);
    expect(again.stderr).toContain("tiny-flux: all files present");
    expect(server.requestsTo("/tiny/flux.gguf")).toHaveLength(1);
  });

  it("pull resumes a partial file left by an interrupted pull", async () => {
    const modelsConfig = localSources();
    fs.mkdirSync(modelsDir, { recursive: true });
    const target = path.join(modelsDir, "v1-5-pruned-emaonly.safetensors");
    fs.writeFileSync(`${target}.part`, sd15.subarray(0, 123_456));

    const listed = await diffugen(["models"], { MODELS_CONFIG: modelsConfig });
    expect(listed.stdout).toContain(`partial download: 123 KB in ${target}.part (pull resumes it)`);

    const pulled = await diffugen(["models", "pull", "sd15"], { MODELS_CONFIG: modelsConfig });
    expect(pulled.exitCode, pulled.stderr).toBe(0);
    expect(server.requestsTo("/sd15.safetensors")[0]?.headers.range).toBe("bytes=123456-");
    expect(pulled.stderr).toContain("resumed from 123 KB");
    expect(fs.readFileSync(target).equals(sd15)).toBe(true);
  });

  it("pull deletes a file whose checksum is wrong and fails naming it", async () => {
    server.route("/sd15.safetensors", { body: bytes("not sd15", 1000) });
    const modelsConfig = writeModelsConfig([{ name: "sd15", sources: { model: { url: `${server.url}/sd15.safetensors`, sha256: sha(sd15) } } }]);
    const result = await diffugen(["models", "pull", "sd15"], { MODELS_CONFIG: modelsConfig });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/sha256 mismatch/);
    const target = path.join(modelsDir, "v1-5-pruned-emaonly.safetensors");
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.existsSync(`${target}.part`)).toBe(false);
  });

  it("explains a gated Hugging Face model (401) and sends HF_TOKEN as a bearer token", async () => {
    // HF_ENDPOINT points the built-in huggingface.co URLs at the local server, like a mirror.
    const repoPath = "/stabilityai/stable-diffusion-3-medium/resolve/main/sd3_medium_incl_clips_t5xxlfp16.safetensors";
    const sd3 = bytes("sd3", 100_000);
    server.route(repoPath, { body: sd3, bearer: "hf_test_token" });

    const refused = await diffugen(["models", "pull", "sd3"], { HF_ENDPOINT: server.url });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain("HTTP 401");
    expect(refused.stderr).toContain("gated");
    expect(refused.stderr).toContain("accept the licence on https://huggingface.co/stabilityai/stable-diffusion-3-medium");
    expect(refused.stderr).toContain("HF_TOKEN");
    expect(server.requestsTo(repoPath)[0]?.headers.authorization).toBeUndefined();

    const wrongToken = await diffugen(["models", "pull", "sd3"], { HF_ENDPOINT: server.url, HF_TOKEN: "hf_wrong" });
    expect(wrongToken.exitCode).toBe(1);
    expect(wrongToken.stderr).toContain("although HF_TOKEN was sent");

    const allowed = await diffugen(["models", "pull", "sd3"], { HF_ENDPOINT: server.url, HF_TOKEN: "hf_test_token" });
    expect(allowed.exitCode, allowed.stderr).toBe(0);
    expect(server.requestsTo(repoPath).at(-1)?.headers.authorization).toBe("Bearer hf_test_token");
    expect(fs.readFileSync(path.join(modelsDir, "sd3_medium_incl_clips_t5xxlfp16.safetensors")).equals(sd3)).toBe(true);
  });

  it("refuses an unknown model, and a model file nobody knows a source for", async () => {
    const unknown = await diffugen(["models", "pull", "sd9"]);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toMatch(/unknown model 'sd9'.*sd15, sdxl, sd3, flux-schnell, flux-dev/);

    const modelsConfig = writeModelsConfig([
      {
        name: "homemade",
        family: "sd1",
        files: { model: "homemade.safetensors" },
        defaults: { steps: 20, cfgScale: 7, samplingMethod: "euler_a", width: 512, height: 512 },
      },
    ]);
    const noSource = await diffugen(["models", "pull", "homemade"], { MODELS_CONFIG: modelsConfig });
    expect(noSource.exitCode).toBe(1);
    expect(noSource.stderr).toMatch(/no download source is known for homemade model/);
    expect(noSource.stderr).toContain('"sources"');
  });

  it("reports a malformed sources entry in MODELS_CONFIG as a usage error", async () => {
    const modelsConfig = writeModelsConfig([{ name: "sd15", sources: { model: { url: "not a url" } } }]);
    const result = await diffugen(["models"], { MODELS_CONFIG: modelsConfig });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/MODELS_CONFIG .*entry 'sd15': sources: model/);
  });
});
