import type { ParamNames } from "../errors.js";
import { formatSeedProgress } from "./diffugen-api.js";
import { outcomeError, type ImagesOutcome } from "./outcomes.js";
import { messageOf, type AnswerFormatter, type ImageData } from "./stream-formatter.js";

/**
 * The original DiffuGen API's stream (`/generate.../stream`, and
 * /v1/images/generations/stream): `event: progress` in their phases and bands, then
 * `progress` at 100 and `done` with the result, or `event: error`. Their clients draw a
 * bar from it: it never goes backwards and never repeats itself.
 */

export interface SeedStreamOptions {
  /** The `done` event's body, next to `done: true`: the seed API's result, or OpenAI's. */
  result(outcome: ImagesOutcome, images: ImageData): object;
  /** Whether `result` sends the images themselves (base64). */
  needsImageData: boolean;
  /** The route's names for request fields, for errors. */
  params: ParamNames;
  /** Epoch milliseconds (tests pin it). */
  clock?: () => number;
}

export function seedStream(options: SeedStreamOptions): AnswerFormatter {
  const clock = options.clock ?? Date.now;
  let progress = 0;
  let last = "";
  return {
    ends: "at-answer",
    ids: true,
    needsImageData: options.needsImageData,
    progress(event, seq) {
      // A failure is told once, with the answer.
      if (event.kind === "error") return undefined;
      const mapped = formatSeedProgress(event);
      if (!mapped) return undefined;
      progress = Math.max(progress, mapped.progress);
      const key = `${mapped.phase}|${progress}|${mapped.message}`;
      if (key === last) return undefined;
      last = key;
      return [{ data: { ...mapped, progress }, event: "progress", seq }];
    },
    outcome(outcome, seq, images) {
      const timestamp = new Date(clock()).toISOString();
      if (outcome.kind !== "images") {
        const err = outcomeError(outcome, options.params);
        return [{ data: { error: err.message, phase: "error", code: err.details.code ?? null, timestamp }, event: "error", seq }];
      }
      const count = outcome.images.length;
      const complete = {
        phase: "complete",
        progress: 100,
        message: count === 1 ? "Image ready" : `${count} images ready`,
        step: outcome.params.steps,
        total_steps: outcome.params.steps,
        eta_seconds: 0,
        timestamp,
      };
      return [
        { data: complete, event: "progress", seq },
        { data: { done: true, ...options.result(outcome, images) }, event: "done", seq },
      ];
    },
    failure(err) {
      return [{ data: { error: messageOf(err), phase: "error" }, event: "error" }];
    },
  };
}
