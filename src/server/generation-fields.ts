import { z } from "zod";
import type { JobInput, RawJobInput } from "../jobs/index.js";
import { rethrowRejection, type ParamNames } from "./errors.js";
import { flag, looseNumber } from "./http-input.js";
import type { ServerContext } from "./server-context.js";

/**
 * The diffusion controls OpenAI's API has no words for, accepted as extra body fields by
 * every OpenAI-style route (OpenWebUI merges IMAGES_OPENAI_API_PARAMS into its requests;
 * chat clients can send them as custom parameters). Their values are checked by the
 * generation schema, with the model's limits, when the job is admitted.
 */
export const generationExtras = {
  negative_prompt: z.string().optional(),
  steps: looseNumber.optional(),
  cfg_scale: looseNumber.optional(),
  guidance: looseNumber.optional(),
  seed: looseNumber.optional(),
  sampling_method: z.string().optional(),
  scheduler: z.string().optional(),
  vae_tiling: z.union([z.boolean(), z.string()]).optional(),
  /** Let the LLM rewrite the prompt first (image routes; default true). */
  refine: flag().optional(),
};

type Extras = { [K in keyof typeof generationExtras]?: z.output<(typeof generationExtras)[K]> };

export function extrasToRequest(body: Extras): Record<string, unknown> {
  return {
    negativePrompt: body.negative_prompt,
    steps: body.steps,
    cfgScale: body.cfg_scale,
    guidance: body.guidance,
    seed: body.seed,
    samplingMethod: body.sampling_method,
    scheduler: body.scheduler,
    vaeTiling: body.vae_tiling,
  };
}

/** Generation request fields → the OpenAI images API's names for them. */
export const openaiImageParams: ParamNames = {
  prompt: "prompt",
  negativePrompt: "negative_prompt",
  model: "model",
  width: "size",
  height: "size",
  cfgScale: "cfg_scale",
  samplingMethod: "sampling_method",
  batchCount: "n",
  initImage: "image",
  vaeTiling: "vae_tiling",
};

/**
 * OpenAI clients name models their own way: `dall-e-3` (the registry maps it to the
 * default), or our chat ids `diffugen` / `diffugen:<model>`, which mean the same here.
 */
export function imageModelOf(model: string | undefined): string | undefined {
  if (model === undefined) return undefined;
  const name = model.trim();
  if (name === "" || name.toLowerCase() === "diffugen") return undefined;
  return name.replace(/^diffugen:/i, "");
}

/** Validates and checks a job before anything starts, or throws the dialect's error. */
export function admit(ctx: ServerContext, raw: RawJobInput, params: ParamNames): JobInput {
  try {
    return ctx.runner.prepare({ ...raw, request: Object.fromEntries(Object.entries(raw.request).filter(([, v]) => v !== undefined)) });
  } catch (err) {
    rethrowRejection(err, params);
  }
}
