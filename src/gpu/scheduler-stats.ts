import type { FitDecision } from "./fit-advisor.js";
import type { GpuPhase } from "./gpu-events.js";
import type { LlmStateSnapshot } from "./llm-state.js";

export interface DurationSummary {
  count: number;
  /** 0 while count is 0. */
  meanMs: number;
  lastMs: number | undefined;
  maxMs: number;
}

/** Who holds the GPU. */
export type GpuHolderState =
  | { kind: "idle" }
  | { kind: "llm"; leases: number; jobIds: string[]; since: number }
  | {
      kind: "diffusion";
      jobId: string;
      since: number;
      /** VRAM_POLICY=fit: the drawing runs beside these resident LLMs (absent: the LLM is out). */
      besideLlm?: string[] | undefined;
      /** LLM leases held meanwhile (beside a drawing only). */
      llmLeases?: number | undefined;
    };

export interface QueuedJob {
  jobId: string;
  phase: GpuPhase;
  /** 1-based place in line (arrival order). */
  position: number;
  waitingMs: number;
}

/** A compact snapshot for status lines and health checks. */
export interface GpuSchedulerState {
  llm: LlmStateSnapshot["state"];
  gpu: GpuHolderState;
  queue: { jobId: string; phase: GpuPhase }[];
  /** Jobs the current diffusion batch has run (undefined outside a batch). */
  batchJobs: number | undefined;
  closing: boolean;
}

export interface GpuSchedulerStats {
  llm: LlmStateSnapshot;
  gpu: GpuHolderState;
  queue: QueuedJob[];
  /** Confirmed unloads (including "Ollama not reachable, nothing to unload"). */
  unloads: DurationSummary;
  /** Successful reloads. */
  reloads: DurationSummary;
  failures: {
    /** unloadAll() rejected: a model would not leave (timeout) or Ollama answered an error. */
    unloads: number;
    /** reload() rejected or found Ollama unreachable. */
    reloads: number;
    last: { during: "unload" | "reload"; message: string; at: number } | undefined;
  };
  /** Time from acquire to grant, per phase (immediate grants count as 0). */
  waits: Record<GpuPhase, DurationSummary>;
  /** Time from grant to release, per phase: what retryAfterSeconds is estimated from. */
  holds: Record<GpuPhase, DurationSummary>;
  grants: Record<GpuPhase, number>;
  /** A batch: the diffusion jobs run between one confirmed unload and the next reload. */
  diffusionBatches: {
    count: number;
    /** Diffusion jobs run in batches that have ended. */
    jobs: number;
    lastSize: number | undefined;
    maxSize: number;
  };
  rejected: { queueFull: number; aborted: number; closed: number; conflicts: number };
  /** VRAM_POLICY=fit's decisions (all zero under swap). */
  fit?: { besideLlm: number; wholeGpu: number; last: FitDecision | undefined } | undefined;
}

export class DurationStat {
  #count = 0;
  #totalMs = 0;
  #lastMs: number | undefined;
  #maxMs = 0;

  record(ms: number): void {
    this.#count += 1;
    this.#totalMs += ms;
    this.#lastMs = ms;
    this.#maxMs = Math.max(this.#maxMs, ms);
  }

  get count(): number {
    return this.#count;
  }

  /** The mean, or undefined before the first measurement. */
  get meanMs(): number | undefined {
    return this.#count === 0 ? undefined : this.#totalMs / this.#count;
  }

  summary(): DurationSummary {
    return { count: this.#count, meanMs: this.meanMs ?? 0, lastMs: this.#lastMs, maxMs: this.#maxMs };
  }
}

/** The running figures behind stats(); the scheduler records, nobody else writes. */
export class SchedulerCounters {
  readonly unloads = new DurationStat();
  readonly reloads = new DurationStat();
  readonly waits: Record<GpuPhase, DurationStat> = { llm: new DurationStat(), diffusion: new DurationStat() };
  readonly holds: Record<GpuPhase, DurationStat> = { llm: new DurationStat(), diffusion: new DurationStat() };
  readonly grants: Record<GpuPhase, number> = { llm: 0, diffusion: 0 };
  /** VRAM_POLICY=fit: drawings run beside the LLM (swaps avoided), those that needed the whole GPU, the last decision. */
  readonly fit: { besideLlm: number; wholeGpu: number; last: FitDecision | undefined } = { besideLlm: 0, wholeGpu: 0, last: undefined };
  readonly failures: GpuSchedulerStats["failures"] = { unloads: 0, reloads: 0, last: undefined };
  readonly batches: GpuSchedulerStats["diffusionBatches"] = { count: 0, jobs: 0, lastSize: undefined, maxSize: 0 };
  readonly rejected: GpuSchedulerStats["rejected"] = { queueFull: 0, aborted: 0, closed: 0, conflicts: 0 };

  recordFailure(during: "unload" | "reload", message: string, at: number): void {
    if (during === "unload") this.failures.unloads += 1;
    else this.failures.reloads += 1;
    this.failures.last = { during, message, at };
  }

  batchStarted(): void {
    this.batches.count += 1;
  }

  batchEnded(size: number): void {
    this.batches.jobs += size;
    this.batches.lastSize = size;
    this.batches.maxSize = Math.max(this.batches.maxSize, size);
  }
}

/** Assumed until something has been measured. */
const DEFAULT_MS: Record<GpuPhase | "unload" | "reload", number> = {
  diffusion: 60_000,
  llm: 10_000,
  unload: 5_000,
  reload: 10_000,
};

/**
 * How long until a newcomer would likely get the GPU: the rest of the current hold, one
 * hold per waiting diffusion job, one for the waiting LLM jobs (they share the GPU), and
 * one unload + reload if diffusion work is involved. Uses measured means where it has them.
 */
export function estimateWaitMs(
  counters: SchedulerCounters,
  gpu: GpuHolderState,
  queued: readonly { phase: GpuPhase }[],
  now: number,
): number {
  const mean = (key: GpuPhase | "unload" | "reload"): number => {
    const stat = key === "unload" ? counters.unloads : key === "reload" ? counters.reloads : counters.holds[key];
    return stat.meanMs ?? DEFAULT_MS[key];
  };
  const diffusionWaiting = queued.filter((job) => job.phase === "diffusion").length;
  const llmWaiting = queued.length - diffusionWaiting;

  let ms = 0;
  if (gpu.kind !== "idle") ms += Math.max(0, mean(gpu.kind) - (now - gpu.since));
  ms += diffusionWaiting * mean("diffusion");
  if (llmWaiting > 0) ms += mean("llm");
  if (diffusionWaiting > 0 || gpu.kind === "diffusion") ms += mean("unload") + mean("reload");
  return ms;
}
