import path from "node:path";
import type { ProgressEvent } from "../../events/progress-event.js";
import type { JobRecord, StoredEvent } from "../../jobs/index.js";
import type { ImageLinks } from "../image-links.js";

/**
 * The job dialect (GET /v1/jobs...): a job as clients see it, in the snake_case of the
 * rest of the API. Files are links, never server paths; times are Unix seconds like
 * OpenAI's `created`.
 */

const seconds = (ms: number | undefined) => (ms === undefined ? null : Math.floor(ms / 1000));

const snake = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Keys in snake_case, nested objects too (a status event's `step`, a LoRA list). */
export function snakeKeys(value: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [snake(k), snakeValue(v)]));
}

function snakeValue(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeValue);
  if (value !== null && typeof value === "object") return snakeKeys(value);
  return value;
}

export function formatJob(job: JobRecord, links: ImageLinks) {
  return {
    id: job.id,
    object: "diffugen.job" as const,
    mode: job.mode,
    status: job.status,
    created_at: seconds(job.createdAt),
    finished_at: seconds(job.finishedAt),
    phase: job.phase,
    progress: job.progress,
    message: job.message,
    request: snakeKeys(job.request),
    result: formatResult(job, links),
    error: job.error ?? null,
    warnings: job.warnings,
    events_url: `${links.base}/v1/jobs/${job.id}/events`,
  };
}

export type JobView = ReturnType<typeof formatJob>;

function formatResult(job: JobRecord, links: ImageLinks) {
  const result = job.result;
  if (!result) return null;
  if (result.kind === "reply") return { type: "reply" as const, text: result.text };
  return {
    type: "images" as const,
    model: result.model,
    prompt: result.prompt,
    negative_prompt: result.negativePrompt,
    images: result.images.map((image) => ({
      url: links.image(image.file),
      seed: image.seed,
      width: image.width,
      height: image.height,
      index: image.index,
    })),
    parameters: snakeKeys(result.params),
  };
}

/**
 * One stored event as the job stream sends it: `event:` is its kind, the data the event
 * itself (an image as its link, not its path). The `end` event carries the whole job.
 */
export function formatJobEvent(stored: StoredEvent, job: () => JobRecord | undefined, links: ImageLinks): { event: string; data: unknown } {
  const event = stored.event;
  if (event.kind === "end") {
    const record = job();
    return { event: "end", data: record ? formatJob(record, links) : { status: event.status } };
  }
  return { event: event.kind, data: formatProgress(event, links) };
}

function formatProgress(event: ProgressEvent, links: ImageLinks): Record<string, unknown> {
  if (event.kind === "image") {
    const { path: file, ...rest } = event;
    return { ...snakeKeys(rest), url: links.image(path.basename(file)) };
  }
  if (event.kind === "preview") {
    const { pngBase64, ...rest } = event;
    return { ...snakeKeys(rest), b64_json: pngBase64 };
  }
  return snakeKeys(event);
}
