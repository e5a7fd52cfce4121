import type { ParamNames } from "../errors.js";
import { formatSeedProgress } from "./diffugen-api.js";
import { formatStreamError } from "./openai-images.js";
import { outcomeError, type ImagesOutcome } from "./outcomes.js";
import { messageOf, type AnswerFormatter, type Frame, type ImageData } from "./stream-formatter.js";

/**
 * The original DiffuGen API's stream (`/generate.../stream`, and
 * /v1/images/generations/stream): `event: progress` in their phases and bands, then
 * `progress` at 100 and `done` with the result, or `event: error` (in OpenAI's shape on
 * the /v1 route). Their clients draw a
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
  /**
   * The shape of `event: error`: the seed API's `{error, phase, code}` (default), or
   * OpenAI's `{type: "error", error: {message, type, code, param}}` for the route under /v1.
   */
  errors?: "seed" | "openai";
}

export function seedStream(options: SeedStreamOptions): AnswerFormatter {
  const clock = options.clock ?? Date.now;
  let progress = 0;
  let lastMessage: string | undefined;
  /**
   * The line of an `image` event, sent with whatever comes next. Image events come in one
   * burst right before the answer, so holding one back delays nothing; the last one is
   * folded into the `complete` line (see `outcome`).
   */
  let held: Frame | undefined;
  const release = (): Frame[] => {
    const out = held === undefined ? [] : [held];
    held = undefined;
    return out;
  };
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
      // One line per message: the same words again (sd-cli's start and its first line both
      // say "Loading the image model", a little further along the bar) are no news to a
      // client that prints each line; the bar catches up with the next line.
      if (mapped.message === lastMessage) return undefined;
      lastMessage = mapped.message;
      const frame: Frame = { data: { ...mapped, progress }, event: "progress", seq };
      const out = release();
      if (event.kind === "image") held = frame;
      else out.push(frame);
      return out;
    },
    outcome(outcome, seq, images) {
      const timestamp = new Date(clock()).toISOString();
      if (outcome.kind !== "images") {
        const err = outcomeError(outcome, options.params);
        const data =
          options.errors === "openai"
            ? formatStreamError(err.message, err.details.code ?? null, err.details.type, err.details.param ?? null)
            : { error: err.message, phase: "error", code: err.details.code ?? null, timestamp };
        return [...release(), { data, event: "error", seq }];
      }
      /**
       * Ids: `done` carries the job's `end` (seq), as every stream's last message does: a
       * client that saw it has everything, and resuming after it on /v1/jobs/:id/events
       * replays nothing. The `complete` line before it must not share that id (a client
       * that got it but lost `done` would resume after the end and never see the result),
       * so it carries the id of the job event just before the end: resuming after it replays
       * the end, with the result. That event is the last image's: its own line ("Image 1/1
       * ready") is folded into the `complete` line, so no two lines share an id. (Were the
       * event before the end ever another line already sent, the two would share its id,
       * which still means the same place to resume from.)
       */
      const before = seq === undefined ? undefined : seq - 1;
      const folded = held !== undefined && held.seq === before;
      const out = folded ? [] : release();
      held = undefined;
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
        ...out,
        { data: complete, event: "progress", seq: before },
        { data: { done: true, ...options.result(outcome, images) }, event: "done", seq },
      ];
    },
    failure(err) {
      held = undefined;
      const data = options.errors === "openai" ? formatStreamError(messageOf(err), "internal") : { error: messageOf(err), phase: "error" };
      return [{ data, event: "error" }];
    },
  };
}
