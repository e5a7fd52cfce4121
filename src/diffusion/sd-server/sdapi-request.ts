import { readFile } from "node:fs/promises";
import type { GenerationParams } from "../generation-request.js";
import { withoutLoraTags } from "../lora-tags.js";

/**
 * Resolved parameters → the body of sd-server's `/sdapi/v1/txt2img` or `/img2img`
 * (examples/server/routes_sdapi.cpp, master-827). Every value was validated by DiffuGen:
 * sd-server itself ignores a wrongly typed field and clamps steps to 1..100 without a
 * word, so anything it would change is kept off this backend (`sdServerCannotRun`).
 *
 * What the sdapi fields do not carry goes in `<sd_cpp_extra_args>{json}</sd_cpp_extra_args>`
 * at the end of the prompt (the sdcpp schema: distilled guidance, VAE tiling); the server
 * cuts it out before the prompt reaches the model.
 */

export interface SdapiRequest {
  path: "/sdapi/v1/txt2img" | "/sdapi/v1/img2img";
  body: Record<string, unknown>;
}

/** sd-server clamps steps to this (common.cpp, resolve_and_validate strict). */
export const sdServerMaxSteps = 100;
/** And the batch to this. */
export const sdServerMaxBatch = 8;

const extraArgsTag = /<\/?sd_cpp_extra_args>/i;

/**
 * Why sd-server would not draw exactly this request, or undefined when it can. The
 * answer decides the backend before anything is spawned; sd-cli takes such a job.
 */
export function sdServerCannotRun(params: GenerationParams): string | undefined {
  if (params.steps > sdServerMaxSteps) return `sd-server caps steps at ${sdServerMaxSteps}`;
  if (params.batchCount > sdServerMaxBatch) return `sd-server caps a batch at ${sdServerMaxBatch}`;
  // The server would read the user's own text as its arguments (and cut it out of the prompt).
  if (extraArgsTag.test(params.prompt) || extraArgsTag.test(params.negativePrompt)) {
    return "the prompt contains sd-server's <sd_cpp_extra_args> tag";
  }
  return undefined;
}

/**
 * The request for one generation. `loraFiles` maps each LoRA name of the prompt to its
 * file, relative to the LoRA directory (what `/sdapi/v1/loras` lists as `path`): the
 * server does not read `<lora:…>` tags from the prompt, it takes them as a list.
 */
export async function buildSdapiRequest(params: GenerationParams, loraFiles: ReadonlyMap<string, string>): Promise<SdapiRequest> {
  const extra: Record<string, unknown> = {};
  if (params.guidance !== undefined) extra.sample_params = { guidance: { distilled_guidance: params.guidance } };
  if (params.vaeTiling) extra.vae_tiling_params = { enabled: true };
  // sd-cli takes the tags out of the prompt itself; sd-server gets them as `lora` below.
  const text = params.loras.length > 0 ? withoutLoraTags(params.prompt) : params.prompt;
  const prompt = Object.keys(extra).length > 0 ? `${text}<sd_cpp_extra_args>${JSON.stringify(extra)}</sd_cpp_extra_args>` : text;

  const body: Record<string, unknown> = {
    prompt,
    negative_prompt: params.negativePrompt,
    width: params.width,
    height: params.height,
    steps: params.steps,
    cfg_scale: params.cfgScale,
    seed: params.seed,
    batch_size: params.batchCount,
    sampler_name: params.samplingMethod,
  };
  if (params.scheduler !== undefined) body.scheduler = params.scheduler;
  if (params.clipSkip !== undefined) body.clip_skip = params.clipSkip;
  if (params.loras.length > 0) {
    body.lora = params.loras.map((lora) => {
      const file = loraFiles.get(lora.name);
      if (file === undefined) throw new Error(`no file for LoRA '${lora.name}'`);
      return { path: file, multiplier: lora.weight };
    });
  }
  if (params.initImage === undefined) return { path: "/sdapi/v1/txt2img", body };

  body.init_images = [(await readFile(params.initImage)).toString("base64")];
  body.denoising_strength = params.strength ?? 0.75;
  return { path: "/sdapi/v1/img2img", body };
}
