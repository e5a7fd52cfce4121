import type { DurationSummary } from "../gpu/index.js";

/**
 * Turns a running DurationSummary (count, mean, last) that someone else keeps into the
 * individual measurements it has taken since the last look, so they can be fed to a
 * Prometheus histogram.
 *
 * Why: the GPU scheduler keeps its unload/reload times as summaries and tells only the
 * job concerned about each swap; it has no listener for all swaps. Metrics look at its
 * stats() after every job step and at every scrape, so almost always exactly one new
 * measurement has appeared, and `lastMs` is that measurement exactly. If several appeared
 * between two looks (a swap no job waited for), the last one is exact and the others share
 * the rest of the total evenly: the histogram's count and sum stay exact, only which bucket
 * those few land in is an estimate.
 */
export class DurationFollower {
  #count = 0;
  #totalMs = 0;

  /** Measurements (ms) taken since the previous call, oldest first. */
  newSamples(summary: DurationSummary): number[] {
    const added = summary.count - this.#count;
    if (added <= 0) return [];
    const totalMs = summary.meanMs * summary.count;
    const addedMs = Math.max(0, totalMs - this.#totalMs);
    this.#count = summary.count;
    this.#totalMs = totalMs;
    const last = summary.lastMs ?? addedMs / added;
    if (added === 1) return [last];
    const each = Math.max(0, (addedMs - last) / (added - 1));
    return [...Array.from({ length: added - 1 }, () => each), last];
  }
}

/** The same for a plain running count: how much it grew since the last look. */
export class CountFollower {
  #seen = 0;

  increase(count: number): number {
    const added = count - this.#seen;
    if (added <= 0) return 0;
    this.#seen = count;
    return added;
  }
}
