import type { ModelEntryInput } from "./model-entry.js";

/**
 * Models DiffuGen knows out of the box, with stable-diffusion.cpp's usual file names.
 * Defaults follow what each model was trained for (REFERENCE.md §5).
 */
export const builtinModels: ModelEntryInput[] = [
  {
    name: "sd15",
    family: "sd1",
    description: "Stable Diffusion 1.5",
    files: { model: "v1-5-pruned-emaonly.safetensors" },
    aliases: ["sd1.5", "sd-1.5", "stable-diffusion-1.5", "stable-diffusion-v1-5"],
    defaults: { steps: 20, cfgScale: 7, samplingMethod: "euler_a", width: 512, height: 512 },
    limits: { minSize: 64, maxSize: 1024 },
  },
  {
    name: "sdxl",
    family: "sdxl",
    description: "Stable Diffusion XL 1.0",
    files: { model: "sd_xl_base_1.0.safetensors", vae: "sdxl_vae.safetensors" },
    aliases: ["stable-diffusion-xl", "sd-xl", "sdxl-base"],
    defaults: { steps: 20, cfgScale: 7, samplingMethod: "euler_a", width: 1024, height: 1024 },
    limits: { minSize: 256, maxSize: 2048 },
  },
  {
    name: "sd3",
    family: "sd3",
    description: "Stable Diffusion 3 Medium",
    files: { model: "sd3_medium_incl_clips_t5xxlfp16.safetensors" },
    aliases: ["sd3-medium", "stable-diffusion-3"],
    defaults: { steps: 28, cfgScale: 4.5, samplingMethod: "euler", width: 1024, height: 1024 },
    limits: { minSize: 256, maxSize: 2048 },
  },
  {
    name: "flux-schnell",
    family: "flux",
    description: "FLUX.1 schnell (4-step)",
    files: {
      diffusionModel: "flux1-schnell-q8_0.gguf",
      vae: "ae.safetensors",
      clipL: "clip_l.safetensors",
      t5xxl: "t5xxl_fp16.safetensors",
    },
    aliases: ["flux", "flux.1-schnell", "flux1-schnell"],
    defaults: { steps: 4, cfgScale: 1, samplingMethod: "euler", width: 1024, height: 1024 },
    limits: { minSize: 256, maxSize: 2048, maxSteps: 50 },
  },
  {
    name: "flux-dev",
    family: "flux",
    description: "FLUX.1 dev",
    files: {
      diffusionModel: "flux1-dev-q8_0.gguf",
      vae: "ae.safetensors",
      clipL: "clip_l.safetensors",
      t5xxl: "t5xxl_fp16.safetensors",
    },
    aliases: ["flux.1-dev", "flux1-dev"],
    defaults: { steps: 20, cfgScale: 1, guidance: 3.5, samplingMethod: "euler", width: 1024, height: 1024 },
    limits: { minSize: 256, maxSize: 2048 },
  },
];

/** Names OpenAI clients send that mean "whatever image model this box uses by default". */
export const defaultModelAliases = ["dall-e-3", "dall-e-2", "gpt-image-1", "default"];
