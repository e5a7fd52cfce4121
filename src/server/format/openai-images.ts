import { phaseBands, type ProgressEvent } from "../../events/progress-event.js";
import type { ImageLinks } from "../image-links.js";
import { base64Of, unixSeconds, type ImagesOutcome } from "./outcomes.js";
import type { ImageData } from "./stream-formatter.js";

/**
 * ProgressEvent → OpenAI image API objects (REFERENCE.md §3). Streaming clients (the
 * official SDK) switch on `data.type`: partial and completed images use OpenAI's types,
 * progress uses `diffugen.progress`, which no OpenAI type collides with and SDKs pass by.
 */

export type ImageEventPrefix = "image_generation" | "image_edit";

export interface ImageMeta {
  /** `WxH` as generated. */
  size: string;
  quality: string;
  background: string;
  outputFormat: "png";
}

/** Token usage: none is counted for a local model, but clients read the fields. */
export const zeroImageUsage = {
  total_tokens: 0,
  input_tokens: 0,
  output_tokens: 0,
  input_tokens_details: { text_tokens: 0, image_tokens: 0 },
} as const;

export interface ImageProgressObject {
  type: "diffugen.progress";
  phase: ProgressEvent["phase"];
  progress: number;
  message: string;
  step?: { current: number; total: number; eta_seconds: number | null };
  queue_position?: number;
}

/** A small progress object for every event except the big ones (previews, images). */
export function formatImageProgress(event: ProgressEvent): ImageProgressObject | undefined {
  // `params` only sets the size of what follows: the run's parameters come back with the image.
  if (event.kind === "preview" || event.kind === "image" || event.kind === "error" || event.kind === "params") return undefined;
  const out: ImageProgressObject = { type: "diffugen.progress", phase: event.phase, progress: event.progress, message: event.message };
  if (event.kind === "status" && event.step) {
    out.step = { current: event.step.current, total: event.step.total, eta_seconds: event.step.etaSeconds ?? null };
  }
  if (event.kind === "status" && event.queue) out.queue_position = event.queue.position;
  return out;
}

/** A partial image: `meta.size` is the preview PNG's own size (smaller than the image being drawn). */
export function formatPartialImage(prefix: ImageEventPrefix, b64: string, index: number, meta: ImageMeta, createdAt: number) {
  return {
    type: `${prefix}.partial_image` as const,
    b64_json: b64,
    partial_image_index: index,
    created_at: createdAt,
    size: meta.size,
    quality: meta.quality,
    background: meta.background,
    output_format: meta.outputFormat,
  };
}

export function formatCompletedImage(
  prefix: ImageEventPrefix,
  b64: string,
  meta: ImageMeta,
  createdAt: number,
  extra: { revisedPrompt?: string | undefined; url?: string | undefined; seed: number; index: number },
) {
  return {
    type: `${prefix}.completed` as const,
    b64_json: b64,
    created_at: createdAt,
    size: meta.size,
    quality: meta.quality,
    background: meta.background,
    output_format: meta.outputFormat,
    usage: zeroImageUsage,
    // Extras (SDKs keep unknown fields): what the model made of the prompt, where the file is.
    revised_prompt: extra.revisedPrompt,
    url: extra.url,
    seed: extra.seed,
    index: extra.index,
  };
}

export type ResponseFormat = "url" | "b64_json";

/**
 * OpenAI's `data[]`: each image as a link or as base64 (`images`, read by the caller),
 * with the prompt that drew it and its seed.
 */
export function openaiImageData(outcome: ImagesOutcome, responseFormat: ResponseFormat | undefined, links: ImageLinks, images: ImageData) {
  return outcome.images.map((image, i) => ({
    ...(responseFormat === "url" ? { url: links.image(image.path) } : { b64_json: base64Of(images, i) }),
    revised_prompt: outcome.prompt,
    seed: image.seed,
  }));
}

export interface ImagesBodyOptions {
  responseFormat: ResponseFormat | undefined;
  quality: string;
  /** Where image links point (publicBaseUrl), signed when API_KEY is set. */
  links: ImageLinks;
  images: ImageData;
  /** Epoch milliseconds (tests pin it). */
  now: number;
}

/** The answer of POST /v1/images/generations (and edits) without `stream`. */
export function openaiImagesBody(outcome: ImagesOutcome, options: ImagesBodyOptions) {
  const first = outcome.images[0]!;
  return {
    created: unixSeconds(options.now),
    data: openaiImageData(outcome, options.responseFormat, options.links, options.images),
    background: "opaque",
    output_format: "png",
    quality: options.quality,
    size: `${first.width}x${first.height}`,
    usage: zeroImageUsage,
  };
}

/** The same answer as the `done` event of POST /v1/images/generations/stream (the seed API's stream). */
export function openaiImagesResult(outcome: ImagesOutcome, options: Omit<ImagesBodyOptions, "quality">) {
  return {
    created: unixSeconds(options.now),
    data: openaiImageData(outcome, options.responseFormat, options.links, options.images),
    output_format: "png",
    size: `${outcome.params.width}x${outcome.params.height}`,
    usage: zeroImageUsage,
  };
}

/** The error object a streaming OpenAI client throws on (any data with an `error` field). */
export function formatStreamError(message: string, code: string | null, type = "server_error", param: string | null = null) {
  return { type: "error", error: { message, type, code, param } };
}

/**
 * Chooses which real previews become partial images: up to `count`, spread over sampling.
 * Preview k (0-based) goes out once sampling has passed k/count of its way, so with 3 the
 * first comes at once, then around one and two thirds. sd-cli may preview less often than
 * asked (or not at all): then fewer partial images go out, never invented ones.
 */
export class PartialImagePicker {
  #sent = 0;

  constructor(readonly count: number) {}

  /** True when this preview should be sent (and counts it). */
  take(event: ProgressEvent): boolean {
    if (event.kind !== "preview" || this.#sent >= this.count) return false;
    const [from, to] = phaseBands.sampling;
    const fraction = Math.min(1, Math.max(0, (event.progress - from) / (to - from)));
    if (fraction + 1e-9 < this.#sent / this.count) return false;
    this.#sent += 1;
    return true;
  }

  get sent(): number {
    return this.#sent;
  }
}
