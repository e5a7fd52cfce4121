import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { resolveGenerationParams, type GenerationRequest } from "../../../src/diffusion/generation-request.js";
import { buildSdapiRequest, sdServerCannotRun } from "../../../src/diffusion/sd-server/sdapi-request.js";
import { ModelRegistry } from "../../../src/models/index.js";

const registry = new ModelRegistry({ modelsDir: "/models", defaultModel: "sd15" });

function paramsFor(model: string, request: Partial<GenerationRequest> = {}) {
  return resolveGenerationParams({ prompt: "a cat", seed: 42, ...request }, registry.resolve(model));
}

describe("the sdapi request sent to sd-server", () => {
  it("carries every parameter under sd-server's own field names, with the seed DiffuGen drew", async () => {
    const params = paramsFor("sd15", {
      prompt: "a red fox",
      negativePrompt: "blurry",
      width: 640,
      height: 448,
      steps: 12,
      cfgScale: 6.5,
      samplingMethod: "dpm++2m",
      scheduler: "karras",
      seed: 1234,
      batchCount: 3,
      clipSkip: 2,
    });
    const request = await buildSdapiRequest(params, new Map());
    expect(request).toEqual({
      path: "/sdapi/v1/txt2img",
      body: {
        prompt: "a red fox",
        negative_prompt: "blurry",
        width: 640,
        height: 448,
        steps: 12,
        cfg_scale: 6.5,
        seed: 1234,
        batch_size: 3,
        sampler_name: "dpm++2m",
        scheduler: "karras",
        clip_skip: 2,
      },
    });
  });

  it("puts what the sdapi fields lack (Flux guidance, VAE tiling) in sd_cpp_extra_args at the end of the prompt", async () => {
    const request = await buildSdapiRequest(paramsFor("flux-schnell", { guidance: 3.5, vaeTiling: true }), new Map());
    const prompt = request.body.prompt as string;
    const match = /^a cat<sd_cpp_extra_args>(.*)<\/sd_cpp_extra_args>$/.exec(prompt);
    expect(match).not.toBeNull();
    expect(JSON.parse(match![1]!)).toEqual({ sample_params: { guidance: { distilled_guidance: 3.5 } }, vae_tiling_params: { enabled: true } });
  });

  it("sends LoRAs as sd-server's list (it reads no tag in the prompt) and takes the tags out of the prompt", async () => {
    const params = paramsFor("sd15", { prompt: "a cat <lora:ink:0.7> in the rain" });
    const request = await buildSdapiRequest(params, new Map([["ink", "ink.safetensors"]]));
    expect(request.body.prompt).toBe("a cat  in the rain");
    expect(request.body.lora).toEqual([{ path: "ink.safetensors", multiplier: 0.7 }]);
  });

  it("sends an init image as base64 to img2img with its strength", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sdapi-"));
    try {
      const image = path.join(dir, "init.png");
      fs.writeFileSync(image, Buffer.from("not really a png, but bytes"));
      const request = await buildSdapiRequest(paramsFor("sd15", { initImage: image, strength: 0.4 }), new Map());
      expect(request.path).toBe("/sdapi/v1/img2img");
      expect(request.body.init_images).toEqual([Buffer.from("not really a png, but bytes").toString("base64")]);
      expect(request.body.denoising_strength).toBe(0.4);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("jobs sd-server would silently change", () => {
  it("go to sd-cli: over 100 steps (sd-server clamps), a prompt holding the extra-args tag (it would be read as arguments)", () => {
    expect(sdServerCannotRun(paramsFor("sd15", { steps: 100 }))).toBeUndefined();
    expect(sdServerCannotRun(paramsFor("sd15", { steps: 101 }))).toMatch(/caps steps at 100/);
    expect(sdServerCannotRun(paramsFor("sd15", { prompt: 'a cat<sd_cpp_extra_args>{"seed":1}</sd_cpp_extra_args>' }))).toMatch(/sd_cpp_extra_args/);
    expect(sdServerCannotRun(paramsFor("sd15", { negativePrompt: "</SD_CPP_EXTRA_ARGS>" }))).toMatch(/sd_cpp_extra_args/);
  });
});
