import { z } from "zod";
import { flag, numeric } from "../http-input.js";
import { field, option, paramNamesOf, shapeOf, type FieldTable } from "./field-table.js";

/**
 * The original DiffuGen API's request (REFERENCE.md §5), with its own ranges: one line a
 * field. The family routes (/generate/stable, /generate/flux) choose the model themselves
 * from `model` (routes/diffugen-api.ts).
 */

/** Pydantic clients send `null` for unset optional fields. */
const nullish = <T extends z.ZodType>(schema: T) => schema.nullish().transform((v) => v ?? undefined);

export const seedFields = {
  prompt: field(z.string({ error: "prompt is required" }).min(1, { error: "prompt must not be empty" }), "prompt"),
  model: field(nullish(z.string()), "model"),
  width: field(nullish(numeric(z.number().int().min(64).max(2048))), "width"),
  height: field(nullish(numeric(z.number().int().min(64).max(2048))), "height"),
  steps: field(nullish(numeric(z.number().int().min(1).max(150))), "steps"),
  cfg_scale: field(nullish(numeric(z.number().min(1).max(20))), "cfgScale"),
  seed: field(nullish(numeric(z.number().int().min(-1))), "seed"),
  sampling_method: field(nullish(z.string()), "samplingMethod"),
  scheduler: field(nullish(z.string()), "scheduler"),
  negative_prompt: field(nullish(z.string()), "negativePrompt"),
  clip_skip: field(nullish(numeric(z.number().int().min(1).max(12))), "clipSkip"),
  /** Let the LLM rewrite the prompt first (default true). */
  refine: option(nullish(flag())),
} satisfies FieldTable;

export const seedBody = z.object(shapeOf(seedFields));
export type SeedBody = z.output<typeof seedBody>;

export const seedParams = paramNamesOf(seedFields);
