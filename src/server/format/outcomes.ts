import type { JobOutcome } from "../../jobs/index.js";
import { apiErrorFromRun, type ApiError, type ParamNames } from "../errors.js";

export type ImagesOutcome = Extract<JobOutcome, { kind: "images" }>;

/**
 * What a client is told when the run did not draw: the run's error (the field at fault
 * under the dialect's name for it, `params`), the cancel, or a reply in words where a
 * picture was due.
 */
export function outcomeError(outcome: Exclude<JobOutcome, { kind: "images" }>, params: ParamNames): ApiError {
  switch (outcome.kind) {
    case "failed":
      return apiErrorFromRun(outcome.error, { params });
    case "cancelled":
      return apiErrorFromRun({ code: "cancelled", message: `Cancelled: ${outcome.reason}`, node: "runner" });
    case "reply":
      return apiErrorFromRun({ code: "internal", message: "The run answered in words instead of drawing", node: "runner" });
  }
}

/** The images of an answer, or the API error for what happened instead. */
export function imagesOrThrow(outcome: JobOutcome, params: ParamNames): ImagesOutcome {
  if (outcome.kind === "images") return outcome;
  throw outcomeError(outcome, params);
}

/** Image `index` of an answer as base64 (the driver, or the route, read them). */
export function base64Of(images: readonly string[], index: number): string {
  const b64 = images[index];
  if (b64 === undefined) throw new Error(`image ${index + 1} of the answer was not read`);
  return b64;
}

/** OpenAI's time unit: Unix seconds. */
export function unixSeconds(ms: number): number {
  return Math.floor(ms / 1000);
}
