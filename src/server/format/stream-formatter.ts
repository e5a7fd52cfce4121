import type { ProgressEvent } from "../../events/progress-event.js";
import type { GraphStreamMode, JobOutcome, JobResult } from "../../jobs/index.js";

/**
 * What a dialect is to the one stream driver (streamJob, src/server/sse.ts): a formatter
 * of the job's events and of its answer into SSE messages. It decides nothing and does no
 * I/O (the driver reads the images an answer needs), so each one is a plain function of
 * the events it is given, testable without HTTP. The little a dialect remembers within
 * one stream (partial images sent, the bar's last value, the status line) lives in the
 * formatter object its factory makes per stream.
 */

/** One SSE message. */
export interface Frame {
  /** JSON-encoded unless a string (`[DONE]`). */
  data: unknown;
  /** The `event:` name; none for a `data:`-only message. */
  event?: string | undefined;
  /**
   * The job event this message comes from: its `id:` line, from which GET /v1/jobs/:id/events
   * resumes. Absent: the stream's own count goes on from the last id.
   */
  seq?: number | undefined;
}

/** The base64 PNG of each image of an answer, in the answer's order. */
export type ImageData = readonly string[];

interface FormatterBase {
  /** Whether messages carry `id:` lines (OpenAI's chat stream is `data:` lines only). */
  readonly ids: boolean;
  /** What opens the stream, before any event. */
  start?(): Frame[];
  /** The messages for one progress event (`seq`: its number in the job's stream), if any. */
  progress?(event: ProgressEvent, seq: number): Frame[] | undefined;
  /** The messages for one raw LangGraph chunk (jobs started with stream modes). */
  chunk?(mode: GraphStreamMode, chunk: unknown): Frame[] | undefined;
  /** How the dialect tells an unexpected failure of the stream itself; nothing follows it. */
  failure(err: unknown): Frame[];
}

/** An API dialect: the stream ends with the answer, before the LLM is back (a client never waits for Ollama). */
export interface AnswerFormatter extends FormatterBase {
  readonly ends: "at-answer";
  /** The driver reads the answer's images for `outcome` (they are sent as base64). */
  readonly needsImageData: boolean;
  /** The messages that end the stream (`seq`: the job's `end` event; `images`: empty unless asked for). */
  outcome(outcome: JobOutcome, seq: number | undefined, images: ImageData): Frame[];
}

/** The raw graph stream: it follows the run to its very end, the LLM reload included. */
export interface RunFormatter extends FormatterBase {
  readonly ends: "when-finished";
  finished(result: JobResult): Frame[];
}

export type JobStreamFormatter = AnswerFormatter | RunFormatter;

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
