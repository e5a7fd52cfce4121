import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { Job, JobOutcome } from "../jobs/index.js";
import type { Frame, ImageData, JobStreamFormatter } from "./format/stream-formatter.js";
import { imageDataOf, type RequestJob } from "./request-job.js";
import type { AppEnv } from "./server-context.js";
import type { ServerOptions } from "./server-config.js";

/**
 * Server-sent events done right for long generations behind proxies:
 * - `X-Accel-Buffering: no` and `Cache-Control: no-cache, no-transform`, so nginx and
 *   compressing proxies pass each event on at once;
 * - a comment line every 15 s (`: heartbeat`), which every SSE client ignores but which
 *   keeps idle-timeouts from cutting a slow CPU generation;
 * - an `id:` on every event, unless the dialect has none (OpenAI's chat stream is `data:`
 *   lines only);
 * - `signal` aborts when the client disconnects, whichever way node notices first (the
 *   request closing or the response stream being cancelled): routes pass it to the job.
 *
 * Every job stream goes through streamJob, with the dialect's formatter; sseResponse is
 * its lower layer, and serves the streams that are not one job's run (GET /v1/jobs/:id/events).
 */

const antiBufferingHeaders = {
  "Cache-Control": "no-cache, no-transform",
  "X-Accel-Buffering": "no",
} as const;

export interface SseSink {
  /**
   * Sends one event: `data` is JSON-encoded unless it is a string (`[DONE]`). `id`: the
   * job event this one comes from (see /v1/jobs/:id/events), or a stream's own id (the
   * `<stream>:<n>` of /v1/events); else the stream counts.
   */
  send(data: unknown, event?: string, id?: number | string): Promise<void>;
  /** Aborts when the client has gone away. */
  readonly signal: AbortSignal;
}

export interface SseOptions {
  heartbeatMs: number;
  /** Reports a failure inside `run` on the stream, in the dialect's shape. */
  onError?: (err: unknown, sink: SseSink) => Promise<void>;
  log?: (message: string) => void;
  /** Number the events with `id:` lines (default true). */
  ids?: boolean;
}

export function sseResponse(c: Context<AppEnv>, options: SseOptions, run: (sink: SseSink) => Promise<void>): Response {
  const clientSignal = c.var.clientSignal;
  const response = streamSSE(c, async (stream) => {
    const gone = new AbortController();
    const abort = () => gone.abort(new Error("the client disconnected"));
    stream.onAbort(abort);
    if (clientSignal.aborted) abort();
    else clientSignal.addEventListener("abort", abort, { once: true });

    let counter = 0;
    const sink: SseSink = {
      signal: gone.signal,
      async send(data, event, id) {
        if (gone.signal.aborted) return;
        if (typeof id === "number") counter = id;
        else if (id === undefined) counter += 1;
        await stream.writeSSE({
          data: typeof data === "string" ? data : JSON.stringify(data),
          ...(options.ids === false ? {} : { id: String(id ?? counter) }),
          ...(event === undefined ? {} : { event }),
        });
      },
    };
    const heartbeat = setInterval(() => {
      if (!gone.signal.aborted) void stream.write(": heartbeat\n\n");
    }, options.heartbeatMs);
    heartbeat.unref?.();
    try {
      await run(sink);
    } catch (err) {
      if (!gone.signal.aborted) {
        options.log?.(`[diffugen] stream failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        await options.onError?.(err, sink).catch(() => undefined);
      }
    } finally {
      clearInterval(heartbeat);
      clientSignal.removeEventListener("abort", abort);
    }
  });
  // Through c.header too: Hono copies the context's headers (streamSSE's plain
  // `no-cache` among them) onto the response it returns.
  for (const [name, value] of Object.entries(antiBufferingHeaders)) {
    c.header(name, value);
    response.headers.set(name, value);
  }
  return response;
}

/**
 * Drives one job's stream for a dialect: the job's events through the formatter as they
 * come, then the end: the answer (an API dialect stops there, before the LLM reload), or
 * the whole run (the graph stream). The client leaving cancels the job as the request's
 * CANCEL_ON_DISCONNECT says; an unexpected failure is told in the dialect's shape.
 */
export function streamJob(
  c: Context<AppEnv>,
  started: RequestJob,
  formatter: JobStreamFormatter,
  options: Pick<ServerOptions, "heartbeatMs" | "log">,
): Response {
  return sseResponse(
    c,
    {
      heartbeatMs: options.heartbeatMs,
      log: options.log,
      ids: formatter.ids,
      onError: (err, sink) => sendFrames(sink, formatter.failure(err)),
    },
    async (sink) => {
      started.bindStream(sink.signal);
      for await (const frame of jobFrames(started.job, formatter)) await sink.send(frame.data, frame.event, frame.seq);
    },
  );
}

/**
 * The messages of one job's stream, in order: what streamJob sends, without HTTP (tests
 * run it over recorded jobs). The images an answer sends are read here (`readImages`), so
 * formatters do no I/O.
 */
export async function* jobFrames(
  job: Pick<Job, "events" | "outcome" | "finished">,
  formatter: JobStreamFormatter,
  readImages: (outcome: JobOutcome) => Promise<ImageData> = imageDataOf,
): AsyncGenerator<Frame> {
  yield* formatter.start?.() ?? [];
  let endSeq: number | undefined;
  for await (const item of job.events) {
    if (item.type === "progress") yield* formatter.progress?.(item.event, item.seq) ?? [];
    else if (item.type === "chunk") yield* formatter.chunk?.(item.mode, item.chunk) ?? [];
    else if (item.type === "outcome" && formatter.ends === "at-answer") {
      endSeq = item.seq;
      break;
    }
  }
  if (formatter.ends === "when-finished") {
    yield* formatter.finished(await job.finished);
    return;
  }
  const outcome = await job.outcome;
  const images = formatter.needsImageData ? await readImages(outcome) : [];
  yield* formatter.outcome(outcome, endSeq, images);
}

async function sendFrames(sink: SseSink, frames: readonly Frame[]): Promise<void> {
  for (const frame of frames) await sink.send(frame.data, frame.event, frame.seq);
}
