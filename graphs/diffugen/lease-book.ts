import type { GpuLease, ReleaseOutcome } from "../../src/gpu/index.js";

/**
 * Holds a run's diffusion lease between the nodes that share it: `unload` takes it,
 * `diffuse` uses it and gives it back, `reload` waits for what giving it back set off
 * (the LLM reload, or the hand-over to the next image job).
 *
 * A lease must never outlive its run. The run's own abort signal releases it, so an abort
 * that lands between two nodes (when LangGraph rejects the stream at once and runs no
 * further node) still gives the GPU back. But once `diffuse` has claimed the lease, only
 * `diffuse` may give it back: it does so after sd-cli has exited, because releasing while
 * the process is still dying would let the LLM load beside it.
 */
export class LeaseBook {
  private readonly leases = new Map<string, GpuLease>();
  private readonly claimed = new Set<string>();
  private readonly releases = new Map<string, Promise<ReleaseOutcome>>();

  hold(jobId: string, lease: GpuLease, runSignal: AbortSignal | undefined): void {
    this.leases.set(jobId, lease);
    // Nobody will ask for the outcome of an aborted run: release without keeping it.
    const onAbort = () => {
      if (this.leases.get(jobId) !== lease || this.claimed.has(jobId)) return;
      this.leases.delete(jobId);
      void lease.release();
    };
    runSignal?.addEventListener("abort", onAbort, { once: true });
    if (runSignal?.aborted) onAbort();
  }

  /** Takes the lease for a node that will release it itself; undefined if already gone. */
  claim(jobId: string): GpuLease | undefined {
    const lease = this.leases.get(jobId);
    if (lease) this.claimed.add(jobId);
    return lease;
  }

  /** Idempotent: gives the GPU back and remembers what that set off, for `reload`. */
  release(jobId: string): Promise<ReleaseOutcome> | undefined {
    const lease = this.leases.get(jobId);
    if (!lease) return this.releases.get(jobId);
    this.leases.delete(jobId);
    this.claimed.delete(jobId);
    const outcome = lease.release();
    this.releases.set(jobId, outcome);
    return outcome;
  }

  /** What releasing this run's lease set off (once; the entry is forgotten afterwards). */
  takeOutcome(jobId: string): Promise<ReleaseOutcome> | undefined {
    const outcome = this.release(jobId);
    this.releases.delete(jobId);
    return outcome;
  }

  get size(): number {
    return this.leases.size;
  }
}
