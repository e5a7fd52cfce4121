import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ModelFilesMissingError,
  ModelRegistry,
  ModelsConfigError,
  UnknownModelError,
} from "../../../src/models/index.js";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-models-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const registry = (extra: Partial<ConstructorParameters<typeof ModelRegistry>[0]> = {}) =>
  new ModelRegistry({ modelsDir: dir, defaultModel: "sd15", ...extra });

describe("ModelRegistry", () => {
  it("ships the five built-in models with their defaults", () => {
    const r = registry();
    expect(r.names()).toEqual(["sd15", "sdxl", "sd3", "flux-schnell", "flux-dev"]);
    expect(r.resolve("sd15").defaults).toMatchObject({ steps: 20, cfgScale: 7, samplingMethod: "euler_a", width: 512 });
    expect(r.resolve("sd3").defaults).toMatchObject({ steps: 28, cfgScale: 4.5, samplingMethod: "euler" });
    expect(r.resolve("flux-schnell").defaults).toMatchObject({ steps: 4, cfgScale: 1, width: 1024 });
    expect(r.resolve("flux-dev").defaults).toMatchObject({ steps: 20, guidance: 3.5 });
  });

  it("resolves the names users type", () => {
    const r = registry({ defaultModel: "flux-schnell" });
    expect(r.resolve("sd1.5").name).toBe("sd15");
    expect(r.resolve("Stable-Diffusion-XL").name).toBe("sdxl");
    expect(r.resolve("flux").name).toBe("flux-schnell");
    expect(r.resolve("dall-e-3").name).toBe("flux-schnell");
    expect(r.resolve().name).toBe("flux-schnell");
  });

  it("rejects an unknown model and lists the known ones", () => {
    expect(() => registry().resolve("midjourney")).toThrow(UnknownModelError);
    expect(() => registry().resolve("midjourney")).toThrow(/sd15, sdxl/);
  });

  it("passes each file with its own flag, as absolute paths under MODELS_DIR", () => {
    const r = registry();
    expect(r.files(r.resolve("flux-dev")).map((f) => [f.flag, f.path])).toEqual([
      ["--diffusion-model", path.join(dir, "flux1-dev-q8_0.gguf")],
      ["--vae", path.join(dir, "ae.safetensors")],
      ["--clip_l", path.join(dir, "clip_l.safetensors")],
      ["--t5xxl", path.join(dir, "t5xxl_fp16.safetensors")],
    ]);
  });

  it("reports which file is missing and where", () => {
    const r = registry();
    fs.writeFileSync(path.join(dir, "sd_xl_base_1.0.safetensors"), "");
    const sdxl = r.resolve("sdxl");
    expect(r.missingFiles(sdxl).map((f) => f.role)).toEqual(["vae"]);
    expect(() => r.assertFilesPresent(sdxl)).toThrow(ModelFilesMissingError);
    expect(() => r.assertFilesPresent(sdxl)).toThrow(path.join(dir, "sdxl_vae.safetensors"));
    fs.writeFileSync(path.join(dir, "sdxl_vae.safetensors"), "");
    expect(r.assertFilesPresent(sdxl)).toHaveLength(2);
  });

  it("adds and overrides entries from MODELS_CONFIG without code", () => {
    const file = path.join(dir, "models.json");
    fs.writeFileSync(
      file,
      JSON.stringify({
        models: [
          { name: "sdxl", files: { vae: "sdxl_vae-fp16-fix.safetensors" }, defaults: { steps: 30 } },
          {
            name: "juggernaut",
            family: "sdxl",
            files: { model: "/abs/juggernaut.safetensors" },
            aliases: ["jugg"],
            defaults: { steps: 25, cfgScale: 5, samplingMethod: "dpm++2m", width: 1024, height: 1024 },
          },
        ],
      }),
    );
    const r = registry({ modelsConfig: file });
    const sdxl = r.resolve("sdxl");
    expect(sdxl.files).toEqual({ model: "sd_xl_base_1.0.safetensors", vae: "sdxl_vae-fp16-fix.safetensors" });
    expect(sdxl.defaults).toMatchObject({ steps: 30, cfgScale: 7 });
    expect(r.resolve("jugg").name).toBe("juggernaut");
    expect(r.files(r.resolve("juggernaut"))[0]?.path).toBe("/abs/juggernaut.safetensors");
  });

  it("says what is wrong with a bad MODELS_CONFIG", () => {
    const file = path.join(dir, "models.json");
    fs.writeFileSync(file, JSON.stringify([{ name: "broken", family: "sd1", files: {} }]));
    expect(() => registry({ modelsConfig: file })).toThrow(ModelsConfigError);
    expect(() => registry({ modelsConfig: file })).toThrow(/broken/);
    fs.writeFileSync(file, "{ not json");
    expect(() => registry({ modelsConfig: file })).toThrow(ModelsConfigError);
  });

  it("refuses a default model that does not exist", () => {
    expect(() => registry({ defaultModel: "nope" })).toThrow(/DEFAULT_IMAGE_MODEL/);
  });
});
