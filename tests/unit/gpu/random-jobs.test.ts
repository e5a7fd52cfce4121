import { describe, expect, it } from "vitest";
import { AcquireAbortedError, QueueFullError, type GpuPhase } from "../../../src/gpu/index.js";
import { Harness } from "./harness.js";

/** mulberry32: a small seeded PRNG, so a failing seed can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

type Outcome = "done" | "aborted" | "refused";

async function runRandomJobs(seed: number, options: { maxQueue: number; maxBatch: number }) {
  const random = prng(seed);
  const h = new Harness(options);
  h.fake.unloadDelayMs = 1 + Math.floor(random() * 3);
  h.fake.reloadDelayMs = 1 + Math.floor(random() * 3);

  const job = async (i: number): Promise<Outcome> => {
    const phase: GpuPhase = random() < 0.5 ? "llm" : "diffusion";
    const arriveAfter = Math.floor(random() * 6);
    const holdFor = Math.floor(random() * 4);
    const abortAfter = random() < 0.3 ? Math.floor(random() * 10) : undefined;
    const releaseTwice = random() < 0.2;

    await sleep(arriveAfter);
    const controller = new AbortController();
    if (abortAfter !== undefined) setTimeout(() => controller.abort(), abortAfter);
    let lease;
    try {
      lease = await h.acquire(phase, `j${i}`, { signal: controller.signal });
    } catch (error) {
      if (error instanceof AcquireAbortedError) return "aborted";
      if (error instanceof QueueFullError) return "refused";
      throw error;
    }
    try {
      await sleep(holdFor);
    } finally {
      const first = h.release(lease);
      if (releaseTwice) expect(lease.release()).toBe(first);
      await first;
    }
    return "done";
  };

  const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => job(i)));
  await h.scheduler.whenSettled();
  return { h, outcomes };
}

describe("GpuScheduler: 20 concurrent jobs, random phases, durations and aborts", () => {
  const cases = Array.from({ length: 30 }, (_, i) => ({
    seed: 1000 + i,
    maxQueue: i % 3 === 0 ? 6 : 20,
    maxBatch: 1 + (i % 4),
  }));

  it.each(cases)("seed $seed (maxQueue $maxQueue, maxBatch $maxBatch) keeps the invariant", async ({ seed, maxQueue, maxBatch }) => {
    const { h, outcomes } = await runRandomJobs(seed, { maxQueue, maxBatch });
    const stats = h.scheduler.stats();

    expect(h.fake.violations).toEqual([]);
    expect(h.fake.heldLeases("llm") + h.fake.heldLeases("diffusion")).toBe(0);
    expect(h.scheduler.state()).toMatchObject({ gpu: { kind: "idle" }, queue: [] });
    if (maxQueue === 20) expect(outcomes).not.toContain("refused");

    // Every unload was followed by exactly one reload, and each opened one batch.
    expect(h.fake.unloads).toBe(h.fake.reloads);
    expect(stats.unloads.count).toBe(h.fake.unloads);
    expect(stats.reloads.count).toBe(h.fake.reloads);
    expect(stats.diffusionBatches.count).toBe(h.fake.unloads);
    expect(stats.failures).toMatchObject({ unloads: 0, reloads: 0 });
    if (h.fake.unloads > 0) {
      expect(h.scheduler.state().llm).toBe("resident");
    } else {
      expect(h.scheduler.state().llm).toBe("unknown");
    }
    expect(h.fake.resident).toBe(true);

    expect(stats.grants.llm + stats.grants.diffusion).toBe(outcomes.filter((o) => o === "done").length);
    expect(stats.rejected.aborted).toBe(outcomes.filter((o) => o === "aborted").length);
    expect(stats.rejected.queueFull).toBe(outcomes.filter((o) => o === "refused").length);
    expect(stats.diffusionBatches.jobs).toBe(stats.grants.diffusion);
  });

  it("exercises all paths across the seeds", async () => {
    let aborted = 0;
    let refused = 0;
    let batchesOverOne = 0;
    for (const { seed, maxQueue, maxBatch } of cases.slice(0, 12)) {
      const { h, outcomes } = await runRandomJobs(seed, { maxQueue, maxBatch });
      aborted += outcomes.filter((o) => o === "aborted").length;
      refused += outcomes.filter((o) => o === "refused").length;
      if (h.scheduler.stats().diffusionBatches.maxSize > 1) batchesOverOne += 1;
    }
    expect(aborted).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
    expect(batchesOverOne).toBeGreaterThan(0);
  });
});
