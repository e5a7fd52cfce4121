import { GpuScheduler, type GpuEvent, type GpuLease, type GpuPhase, type ReleaseOutcome } from "../../../src/gpu/index.js";
import { FakeLlmResidency, ManualClock } from "./fake-llm-residency.js";

/** Lets every pending promise reaction and queued microtask run. */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A scheduler wired to the fake residency: every grant and release is reported to the fake
 * so it can check the invariant, and every job's events are recorded.
 */
export class Harness {
  readonly clock = new ManualClock();
  readonly fake: FakeLlmResidency;
  readonly scheduler: GpuScheduler;
  readonly logs: { message: string; fields: Record<string, unknown> }[] = [];
  readonly #events = new Map<string, GpuEvent[]>();
  /** Job ids in grant order. */
  readonly grants: string[] = [];

  constructor(options: { maxQueue?: number; maxBatch?: number; resident?: boolean; manualClock?: boolean } = {}) {
    this.fake = new FakeLlmResidency({ resident: options.resident ?? true, clock: this.clock });
    this.scheduler = new GpuScheduler({
      llm: this.fake,
      maxQueue: options.maxQueue,
      maxBatch: options.maxBatch,
      now: options.manualClock ? this.clock.now : undefined,
      log: (message, fields) => this.logs.push({ message, fields }),
    });
  }

  acquire(phase: GpuPhase, jobId: string, options: { signal?: AbortSignal } = {}): Promise<GpuLease> {
    const events = this.events(jobId);
    return this.scheduler.acquire(phase, {
      jobId,
      signal: options.signal,
      onEvent: (event) => {
        events.push(event);
        if (event.type === "granted") {
          this.grants.push(jobId);
          this.fake.granted(event.phase, jobId);
        }
      },
    });
  }

  release(lease: GpuLease): Promise<ReleaseOutcome> {
    if (!lease.released) this.fake.released(lease.phase, lease.jobId);
    return lease.release();
  }

  events(jobId: string): GpuEvent[] {
    let events = this.#events.get(jobId);
    if (!events) this.#events.set(jobId, (events = []));
    return events;
  }

  eventTypes(jobId: string): string[] {
    return this.events(jobId).map((e) => e.type);
  }
}
