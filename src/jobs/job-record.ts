import type { GenerationParams } from "../diffusion/index.js";
import type { Phase, ProgressEvent } from "../events/progress-event.js";
import type { RunError } from "../../graphs/diffugen/state.js";
import type { JobInput } from "./job.js";

/**
 * What the job store keeps of a job: enough to answer GET /v1/jobs/:id after the client
 * (or the whole process) went away, and every event a stream showed, to replay it.
 */

/**
 * `running` from start (waiting for the GPU included) until the answer is known;
 * `succeeded` once the images are saved or the reply written (the LLM reload may still be
 * going on: a client never waits for it); `failed` also covers jobs that were running when
 * the process died (error code `interrupted`).
 */
export type JobStatus = "running" | "succeeded" | "failed" | "cancelled";

export interface StoredImage {
  /** The file's name in OUTPUT_DIR (never a full path: URLs are made per request). */
  file: string;
  seed: number;
  width: number;
  height: number;
  index: number;
}

export type StoredResult =
  | {
      kind: "images";
      model: string;
      /** The prompt that drew (the refined one when the LLM rewrote it). */
      prompt: string;
      negativePrompt: string;
      images: StoredImage[];
      params: Omit<GenerationParams, "initImage" | "prompt" | "negativePrompt">;
    }
  | { kind: "reply"; text: string };

export interface JobRecord {
  id: string;
  mode: JobInput["mode"];
  status: JobStatus;
  /** Epoch milliseconds. */
  createdAt: number;
  updatedAt: number;
  /** When the answer was known (or the job failed / was cancelled). */
  finishedAt: number | undefined;
  phase: Phase;
  progress: number;
  message: string;
  /** The request as validated (JobInput.request); an uploaded init image is not kept. */
  request: Record<string, unknown>;
  result: StoredResult | undefined;
  error: Pick<RunError, "code" | "message"> | undefined;
  warnings: string[];
  /** Part of every output file name this job writes, so its files can be found later. */
  fileTag: string;
  /** The seq of the last event stored (0 = none yet). */
  lastSeq: number;
}

/** The event that ends a job's stream: its status is final from here on. */
export interface JobEndEvent {
  kind: "end";
  status: Exclude<JobStatus, "running">;
  at: number;
}

/** One event of a job's stream as stored and replayed: `seq` is its SSE id. */
export interface StoredEvent {
  seq: number;
  event: ProgressEvent | JobEndEvent;
}

export function isEndEvent(event: StoredEvent["event"]): event is JobEndEvent {
  return event.kind === "end";
}
