import { z } from "zod";
import { maxBatchCount } from "../../diffusion/index.js";
import { invalidRequest } from "../errors.js";
import { flag, looseNumber, numeric, parseSize, sizeSchema } from "../http-input.js";
import { field, filledByRoute, option, paramNamesOf, type FieldTable } from "./field-table.js";

/**
 * The OpenAI-style routes' fields (images, edits, chat, background jobs). A generation
 * field added to `openaiGenerationFields` is accepted by every one of them, reaches the
 * generation request, and is named in their errors: one line.
 */

/**
 * The diffusion controls OpenAI's API has no words for, accepted as extra body fields
 * (OpenWebUI merges IMAGES_OPENAI_API_PARAMS into its requests; chat clients can send
 * them as custom parameters). Their values are checked by the generation schema, with
 * the model's limits, when the job is admitted.
 */
export const openaiGenerationFields = {
  negative_prompt: field(z.string().optional(), "negativePrompt"),
  steps: field(looseNumber.optional(), "steps"),
  cfg_scale: field(looseNumber.optional(), "cfgScale"),
  guidance: field(looseNumber.optional(), "guidance"),
  seed: field(looseNumber.optional(), "seed"),
  sampling_method: field(z.string().optional(), "samplingMethod"),
  scheduler: field(z.string().optional(), "scheduler"),
  vae_tiling: field(z.union([z.boolean(), z.string()]).optional(), "vaeTiling"),
  clip_skip: field(looseNumber.optional(), "clipSkip"),
  /** Let the LLM rewrite the prompt first (image routes; default true). */
  refine: option(flag().optional()),
} satisfies FieldTable;

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

/** `size` is both sides at once: an error about either names it. */
export const sizeField = field(sizeSchema.optional(), ["width", "height"], parseSize);

/** OpenAI allows 10 images a request; sd-cli batches fewer here. */
function batchOf(n: number | undefined) {
  if (n !== undefined && n > maxBatchCount) {
    throw invalidRequest(`n must be between 1 and ${maxBatchCount} on this server (got ${n})`, "n");
  }
  return { batchCount: n };
}

/** POST /v1/images/generations (and the routes that take its body). */
export const openaiImageFields = {
  model: field(z.string().optional(), ["model"], (model) => ({ model: imageModelOf(model) })),
  n: field(numeric(z.number().int().min(1).max(10)).optional(), ["batchCount"], batchOf),
  size: sizeField,
  quality: option(z.string().optional()),
  response_format: option(z.enum(["url", "b64_json"]).optional()),
  output_format: option(z.enum(["png"], { error: "only 'png' is supported" }).optional()),
  background: option(z.enum(["auto", "opaque"], { error: "transparent backgrounds are not supported" }).optional()),
  stream: option(flag().optional()),
  partial_images: option(numeric(z.number().int().min(0).max(3)).optional()),
  ...openaiGenerationFields,
} satisfies FieldTable;

/** POST /v1/images/edits: the same, plus how far to move from the upload, which is the init image. */
export const openaiEditFields = {
  ...openaiImageFields,
  strength: field(looseNumber.optional(), "strength"),
  image: filledByRoute(undefined, ["initImage"]),
} satisfies FieldTable;

export const openaiImageParams = paramNamesOf(openaiImageFields);
export const openaiEditParams = paramNamesOf(openaiEditFields);
