import type { GpuPhase } from "./gpu-events.js";

/** Base class of every error the GPU scheduler raises itself (`code` is stable, for the API layer). */
export abstract class GpuSchedulerError extends Error {
  abstract readonly code: string;
}

/** The queue is at maxQueue: come back later. The API answers 429 with Retry-After. */
export class QueueFullError extends GpuSchedulerError {
  readonly code = "GPU_QUEUE_FULL";
  constructor(
    readonly retryAfterSeconds: number,
    readonly queueLength: number,
    readonly maxQueue: number,
  ) {
    super(`GPU queue is full (${queueLength} of ${maxQueue} waiting); retry in about ${retryAfterSeconds} s`);
    this.name = "QueueFullError";
  }
}

/**
 * The job's AbortSignal fired before it got the GPU. `name` is "AbortError" so generic
 * cancellation checks (`err.name === "AbortError"`) recognise it.
 */
export class AcquireAbortedError extends GpuSchedulerError {
  readonly code = "GPU_ACQUIRE_ABORTED";
  constructor(
    readonly jobId: string,
    readonly phase: GpuPhase,
    reason?: unknown,
  ) {
    super(`Job ${jobId} stopped waiting for the GPU (${phase})`, { cause: reason });
    this.name = "AbortError";
  }
}

/** The scheduler is shutting down: no new leases. */
export class SchedulerClosedError extends GpuSchedulerError {
  readonly code = "GPU_SCHEDULER_CLOSED";
  constructor(readonly jobId: string) {
    super(`GPU scheduler is shutting down; job ${jobId} was not started`);
    this.name = "SchedulerClosedError";
  }
}

/**
 * A job asked for a lease that could only be granted after one it already holds is
 * released (e.g. diffusion while holding its own LLM lease): that would wait forever.
 */
export class LeaseConflictError extends GpuSchedulerError {
  readonly code = "GPU_LEASE_CONFLICT";
  constructor(
    readonly jobId: string,
    readonly requested: GpuPhase,
    readonly held: GpuPhase,
  ) {
    super(`Job ${jobId} asked for a ${requested} lease while holding a ${held} lease; release it first`);
    this.name = "LeaseConflictError";
  }
}

/** The LLM unload failed with something that was not an Error (the control plane's own errors pass through). */
export class LlmUnloadFailedError extends GpuSchedulerError {
  readonly code = "LLM_UNLOAD_FAILED";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "LlmUnloadFailedError";
  }
}

/** A bug in the scheduler: a transition from the wrong state, a grant breaking the invariant. */
export class GpuInvariantError extends GpuSchedulerError {
  readonly code = "GPU_INVARIANT";
  constructor(message: string) {
    super(message);
    this.name = "GpuInvariantError";
  }
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (typeof error === "string") return error;
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}
