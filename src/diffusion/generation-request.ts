import { randomInt } from "node:crypto";
import path from "node:path";
import { z } from "zod";
import type { ModelEntry } from "../models/index.js";
import { InvalidGenerationParamsError } from "./errors.js";
import { parseLoraTags, type LoraTag } from "./lora-tags.js";
import { samplingMethods, schedulers } from "./sampling-options.js";

/**
 * What a caller may ask of one generation, before the model's defaults are applied.
 * Every API dialect maps its own field names onto this one shape.
 */

export const maxPromptLength = 8000;
export const maxBatchCount = 8;
/** Seeds are unsigned 32-bit: what every UI shows and stores; sd-cli takes any int64. */
export const maxSeed = 2 ** 32 - 1;
/** Image sides must be multiples of this: sd-cli silently rounds other sizes up. */
export const sizeStep = 64;

/**
 * Form posts and OpenWebUI's merged params deliver numbers as strings ("20"): accept a
 * string that is exactly a decimal number, leave anything else ("abc", "") for the
 * number schema to reject with the field's name. (z.coerce would turn "" into 0.)
 */
function numeric<T extends z.ZodType>(schema: T) {
  return z.preprocess(
    (v) => (typeof v === "string" && /^\s*[-+]?(\d+(\.\d*)?|\.\d+)\s*$/.test(v) ? Number(v) : v),
    schema,
  );
}

function flag() {
  return z.preprocess((v) => (v === "true" ? true : v === "false" ? false : v), z.boolean());
}

const promptText = (field: string) =>
  z
    .string()
    .max(maxPromptLength, { error: `${field} is longer than ${maxPromptLength} characters` })
    .refine((s) => !s.includes("\0"), { error: `${field} must not contain NUL bytes` });

export const generationRequestSchema = z.strictObject({
  prompt: promptText("prompt").refine((s) => s.trim() !== "", { error: "prompt must not be empty" }),
  negativePrompt: promptText("negativePrompt").optional(),
  /** A registry name or alias; absent = the configured default model. */
  model: z.string().min(1).max(200).optional(),
  width: numeric(z.number().int({ error: "width must be a whole number of pixels" }).positive()).optional(),
  height: numeric(z.number().int({ error: "height must be a whole number of pixels" }).positive()).optional(),
  steps: numeric(z.number().int({ error: "steps must be a whole number" }).min(1).max(150)).optional(),
  cfgScale: numeric(z.number().min(0).max(30)).optional(),
  /** Distilled guidance (Flux only; ignored for other families). */
  guidance: numeric(z.number().min(0).max(30)).optional(),
  samplingMethod: z.enum(samplingMethods).optional(),
  scheduler: z.enum(schedulers).optional(),
  /** -1 or absent: we pick a random seed (and report it). */
  seed: numeric(z.number().int({ error: "seed must be a whole number" }).min(-1).max(maxSeed)).optional(),
  batchCount: numeric(z.number().int().min(1).max(maxBatchCount)).optional(),
  /** img2img: path of the starting image on this machine. */
  initImage: z
    .string()
    .min(1)
    .refine((s) => !s.includes("\0"), { error: "initImage must not contain NUL bytes" })
    .optional(),
  /** img2img: how far to move away from the init image (0 = keep, 1 = ignore it). */
  strength: numeric(z.number().min(0).max(1)).optional(),
  vaeTiling: flag().optional(),
  /** CLIP layers to skip from the end (1 = none); absent: the model family's own choice. */
  clipSkip: numeric(z.number().int({ error: "clipSkip must be a whole number" }).min(1).max(12)).optional(),
});

export type GenerationRequest = z.output<typeof generationRequestSchema>;

/** A request with every value decided: what the argv builder turns into flags. */
export interface GenerationParams {
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  /** Only for Flux-family models. */
  guidance: number | undefined;
  samplingMethod: string;
  scheduler: string | undefined;
  /** The seed of the first image; image i gets seed + i. Never random here: we chose it. */
  seed: number;
  /** True when the caller asked for a random seed (and `seed` is the one we drew). */
  randomSeed: boolean;
  batchCount: number;
  /** Absolute path, img2img only. */
  initImage: string | undefined;
  /** img2img only. */
  strength: number | undefined;
  vaeTiling: boolean;
  /** Undefined: sd.cpp decides by model family (1 for SD 1.x, 2 for SD 2.x). */
  clipSkip: number | undefined;
  /** LoRAs named in the prompt. */
  loras: LoraTag[];
}

/** Validates a raw request (any shape) and names the first bad field. */
export function parseGenerationRequest(input: unknown): GenerationRequest {
  const parsed = generationRequestSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  if (!issue) throw new InvalidGenerationParamsError("request", "invalid generation request");
  let param = issue.path.length > 0 ? String(issue.path[0]) : "request";
  if (issue.code === "unrecognized_keys" && issue.keys[0]) {
    param = issue.keys[0];
    throw new InvalidGenerationParamsError(param, `unknown parameter '${param}'`);
  }
  if (issue.code === "invalid_type" && issue.input === undefined && issue.path.length === 0) {
    throw new InvalidGenerationParamsError("request", "the request must be an object with a prompt");
  }
  throw new InvalidGenerationParamsError(param, `invalid ${param}: ${issue.message}`);
}

export interface ResolveOptions {
  /** Where a random seed comes from (tests pin it). */
  randomSeed?: () => number;
}

/** A seed in 0..2^31-1-8, so seed + batch index stays a positive 32-bit number. */
export function drawRandomSeed(): number {
  return randomInt(0, 2 ** 31 - maxBatchCount);
}

/**
 * Fills the model's defaults into a request and enforces what sd-cli cannot be trusted
 * with: a non-numeric value aborts it, a size off the 64 grid is silently changed, a
 * size or step count beyond the model's limits wastes minutes or runs out of memory.
 * Accepts unvalidated input (it runs the schema first) and throws
 * InvalidGenerationParamsError naming the field.
 */
export function resolveGenerationParams(
  request: GenerationRequest,
  entry: ModelEntry,
  options: ResolveOptions = {},
): GenerationParams {
  const req = parseGenerationRequest(request);
  const { defaults, limits } = entry;

  const width = checkSide("width", req.width ?? defaults.width, entry);
  const height = checkSide("height", req.height ?? defaults.height, entry);

  const steps = req.steps ?? defaults.steps;
  if (steps < 1 || steps > limits.maxSteps) {
    throw new InvalidGenerationParamsError(
      "steps",
      `steps must be between 1 and ${limits.maxSteps} for ${entry.name} (got ${steps})`,
    );
  }

  let loras: LoraTag[];
  try {
    loras = parseLoraTags(req.prompt);
  } catch (err) {
    throw new InvalidGenerationParamsError("prompt", `invalid prompt: ${(err as Error).message}`);
  }

  const randomSeed = req.seed === undefined || req.seed === -1;
  const seed = randomSeed ? (options.randomSeed ?? drawRandomSeed)() : (req.seed as number);
  assertFinite("seed", seed);

  const isFlux = entry.family === "flux";
  const params: GenerationParams = {
    prompt: req.prompt,
    negativePrompt: req.negativePrompt ?? "",
    width,
    height,
    steps,
    cfgScale: req.cfgScale ?? defaults.cfgScale,
    // Only Flux has a distilled-guidance input; other families would ignore the flag.
    guidance: isFlux ? (req.guidance ?? defaults.guidance) : undefined,
    samplingMethod: req.samplingMethod ?? defaults.samplingMethod,
    scheduler: req.scheduler ?? defaults.scheduler,
    seed,
    randomSeed,
    batchCount: req.batchCount ?? 1,
    initImage: req.initImage === undefined ? undefined : path.resolve(req.initImage),
    // strength means nothing without an init image; sd-cli's own default is 0.75.
    strength: req.initImage === undefined ? undefined : (req.strength ?? 0.75),
    vaeTiling: req.vaeTiling ?? false,
    clipSkip: req.clipSkip,
    loras,
  };
  // Defaults come from MODELS_CONFIG too: check the merged values, not only the request.
  for (const key of ["cfgScale", "guidance", "strength"] as const) {
    const value = params[key];
    if (value !== undefined) assertFinite(key, value);
  }
  if (params.cfgScale < 0 || params.cfgScale > 30) {
    throw new InvalidGenerationParamsError("cfgScale", `cfgScale must be between 0 and 30 (got ${params.cfgScale})`);
  }
  return params;
}

function checkSide(param: "width" | "height", value: number, entry: ModelEntry): number {
  assertFinite(param, value);
  const { minSize, maxSize } = entry.limits;
  if (value % sizeStep !== 0 || value < minSize || value > maxSize) {
    throw new InvalidGenerationParamsError(
      param,
      `${param} must be a multiple of ${sizeStep} between ${minSize} and ${maxSize} for ${entry.name} (got ${value})`,
    );
  }
  return value;
}

export function assertFinite(param: string, value: unknown): asserts value is number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new InvalidGenerationParamsError(param, `${param} must be a finite number (got ${String(value)})`);
  }
}

/**
 * The same parameters drawing with other words (the LLM's refined prompt): only the
 * prompts are checked again, every other value (the seed drawn once included) stays.
 */
export function withPrompt(params: GenerationParams, prompt: string, negativePrompt: string): GenerationParams {
  const checked = parseGenerationRequest({ prompt, negativePrompt });
  let loras: LoraTag[];
  try {
    loras = parseLoraTags(checked.prompt);
  } catch (err) {
    throw new InvalidGenerationParamsError("prompt", `invalid prompt: ${(err as Error).message}`);
  }
  return { ...params, prompt: checked.prompt, negativePrompt: checked.negativePrompt ?? "", loras };
}
