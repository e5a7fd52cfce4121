import type { JobEvent, JobInput, JobResult } from "./job.js";

/** What an observer knows of a job (metrics and logs are keyed by it). */
export interface JobInfo {
  id: string;
  mode: JobInput["mode"];
  /** The registry name the request asked for (undefined: the default model). */
  requestedModel: string | undefined;
  /** Epoch milliseconds when the job started. */
  startedAt: number;
}

/**
 * Watches every job the runner runs, without taking part: metrics, structured logs.
 * Called synchronously from the runner; an observer that throws is ignored (and must not).
 */
export interface JobObserver {
  jobStarted?(job: JobInfo): void;
  /** Every event of the run, in order (the same ones a streaming client sees). */
  jobEvent?(job: JobInfo, event: JobEvent): void;
  /** The whole run is over (images saved, GPU released, LLM reloaded or given up on). */
  jobFinished?(job: JobInfo, result: JobResult, durationMs: number): void;
}
