import type { ReloadReport } from "./llm-residency.js";
import type { GpuPhase } from "./gpu-events.js";

/** What giving the GPU back led to, once it has settled. */
export type ReleaseOutcome =
  /** Batching: the next waiting diffusion job got the GPU, the LLM stays out. */
  | { kind: "handed_over"; toJobId: string }
  /** This was the last diffusion job for now: the LLM is back. */
  | { kind: "llm_reloaded"; report: ReloadReport }
  /** The reload failed (recorded in stats; the next LLM acquire tries again). */
  | { kind: "llm_reload_failed"; error: string }
  /** VRAM_POLICY=fit: the drawing ran beside the LLM, which never left: nothing to reload. */
  | { kind: "llm_stayed" }
  /** Nothing for this job to wait for (an LLM lease, or a release during shutdown bookkeeping). */
  | { kind: "none" };

/**
 * The right to use the GPU for one phase. Release it on every path out of the work
 * (`try/finally` or `await using`).
 */
export interface GpuLease extends AsyncDisposable {
  readonly jobId: string;
  readonly phase: GpuPhase;
  /** Clock ms at grant. */
  readonly grantedAt: number;
  readonly waitedMs: number;
  readonly released: boolean;
  /** A diffusion lease granted beside the resident LLM (VRAM_POLICY=fit); false when the LLM was moved out. */
  readonly besideLlm?: boolean | undefined;
  /**
   * Gives the GPU back. Idempotent (every call returns the first call's promise) and never
   * rejects. For a diffusion lease it resolves once the transition it triggered is done:
   * the GPU handed to the next diffusion job, or the LLM reloaded (or the reload failed).
   * For an LLM lease it resolves at once.
   */
  release(): Promise<ReleaseOutcome>;
}

/** The scheduler's side of a lease: a release callback that must not reject. */
export class GrantedLease implements GpuLease {
  #release: Promise<ReleaseOutcome> | undefined;

  constructor(
    readonly jobId: string,
    readonly phase: GpuPhase,
    readonly grantedAt: number,
    readonly waitedMs: number,
    private readonly giveBack: (lease: GrantedLease) => Promise<ReleaseOutcome>,
    readonly besideLlm = false,
  ) {}

  get released(): boolean {
    return this.#release !== undefined;
  }

  release(): Promise<ReleaseOutcome> {
    this.#release ??= settleRelease(() => this.giveBack(this));
    return this.#release;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}

function settleRelease(giveBack: () => Promise<ReleaseOutcome>): Promise<ReleaseOutcome> {
  const none = (): ReleaseOutcome => ({ kind: "none" });
  try {
    return giveBack().catch(none);
  } catch {
    return Promise.resolve(none());
  }
}
