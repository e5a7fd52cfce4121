import type { Context } from "hono";
import type { Job, JobInput, JobOutcome, StartJobOptions } from "../jobs/index.js";
import type { ImageData } from "./format/stream-formatter.js";
import { readBase64 } from "./image-links.js";
import { claimStream } from "./security/stream-slots.js";
import type { AppEnv, ServerContext } from "./server-context.js";

/** Every response that started a job names it, so the client can find it in /v1/jobs. */
export const jobIdHeader = "X-DiffuGen-Job-Id";

export interface RequestJob {
  job: Job;
  /**
   * For a streamed answer: the stream's end (`signal`: the client leaving, seen either way
   * node notices it) counts as the client going away. Call first thing in the stream's body.
   */
  bindStream(signal: AbortSignal): void;
}

/**
 * Starts the job a request asked for. Whether the client going away cancels it is
 * CANCEL_ON_DISCONNECT's call, per kind of job (chat, images); the job id goes out as a
 * header either way. Must run before the response is made (headers go out with it).
 * A job whose events are streamed to the client (every caller but the non-streaming ones,
 * which pass `events: false`) first takes one of the client's stream slots
 * (MAX_STREAMS_PER_CLIENT): refused, the job never starts.
 */
export function startRequestJob(
  c: Context<AppEnv>,
  ctx: ServerContext,
  input: JobInput,
  options: Omit<StartJobOptions, "signal" | "cancelOnAbort"> = {},
): RequestJob {
  if (options.events !== false) claimStream(c);
  const gone = new AbortController();
  const leave = () => gone.abort(new Error("the client went away"));
  const clientSignal = c.var.clientSignal;
  if (clientSignal.aborted) leave();
  else clientSignal.addEventListener("abort", leave, { once: true });
  const cancelOnAbort = input.mode === "chat" ? ctx.options.cancelOnDisconnect.chat : ctx.options.cancelOnDisconnect.images;
  const job = ctx.runner.start(input, { ...options, signal: gone.signal, cancelOnAbort });
  void job.finished.finally(() => clientSignal.removeEventListener("abort", leave));
  c.header(jobIdHeader, job.id);
  return {
    job,
    bindStream(signal) {
      if (signal.aborted) leave();
      else signal.addEventListener("abort", leave, { once: true });
    },
  };
}

/** The base64 of each image of an answer, for the dialects that send the pictures themselves. */
export async function imageDataOf(outcome: JobOutcome): Promise<ImageData> {
  return outcome.kind === "images" ? Promise.all(outcome.images.map((image) => readBase64(image.path))) : [];
}
