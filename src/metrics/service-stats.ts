import type { SdBackendKind, SdServerStopReason } from "../diffusion/index.js";
import type { GpuHolderState, GpuPhase, LlmState } from "../gpu/index.js";
import type { JobOutcome } from "../jobs/job.js";

/**
 * The body of GET /stats. `diffugen status` reads it: these names are an interface,
 * add fields, rename none.
 */
export interface ServiceStats {
  uptime_seconds: number;
  /** HTTP requests to DiffuGen's own paths, answered (counted when the response began). */
  requests: { total: number; by_status: { "2xx": number; "4xx": number; "5xx": number } };
  jobs: {
    started: number;
    /** Started and not over yet (an answered job is still running while the LLM reloads). */
    running: number;
    /** Counted when the answer is known, so a client that has its answer sees it here. */
    by_outcome: Record<JobOutcome["kind"], number>;
  };
  /** Images delivered to clients. */
  images: number;
  /**
   * Jobs that failed (their outcome was `failed`: sd.cpp crashed, out of memory, the LLM
   * would not leave VRAM, ...). Cancelled jobs are not failures; GPU unload/reload
   * failures are counted apart, under gpu.
   */
  failures: number;
  gpu: {
    holder: GpuHolderState["kind"];
    llm: LlmState;
    /** Confirmed LLM unloads: each is one swap (LLM out for diffusion, then back). */
    swaps: number;
    unload: { count: number; mean_ms: number };
    reload: { count: number; mean_ms: number };
    unload_failures: number;
    reload_failures: number;
  };
  queue: { length: number; jobs: { job_id: string; phase: GpuPhase; position: number; waiting_ms: number }[] };
  /** sd.cpp's own measured time per sampling step, per registry model, over delivered runs. */
  seconds_per_step: Record<string, { mean: number; samples: number }>;
  /** Which program drew, and what it cost to load (absent for an app built without the backends). */
  diffusion?: DiffusionStats | undefined;
  /** The VRAM ledger (VRAM_POLICY): swaps avoided, the last decision, the card at its last reading. */
  vram?: VramStats | undefined;
}

export interface DiffusionStats {
  /** Model loads: every sd-cli run, every sd-server start (it keeps the model for the burst). */
  model_loads: Record<SdBackendKind, number>;
  jobs: Record<SdBackendKind, number>;
  sd_server: { starts: number; stops: Record<SdServerStopReason, number> };
  /** From the start of a job's generation to its first sampling step. */
  first_step: Record<SdBackendKind, { count: number; mean_ms: number; last_ms: number | null }>;
}

export interface VramStats {
  /** `fit` when a ledger runs (a memory tool answers and VRAM_POLICY is not swap). */
  policy: "fit" | "swap";
  swaps_avoided: number;
  /** Drawings the ledger sent to a swap. */
  whole_gpu: number;
  last_decision: string | null;
  card: {
    tool: string;
    total_mib: number;
    free_mib: number;
    used_mib: number;
    llm_mib: number;
    other_mib: number;
    margin_mib: number;
    at: string;
  } | null;
}
