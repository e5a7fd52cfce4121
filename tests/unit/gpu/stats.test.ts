import { describe, expect, it } from "vitest";
import { flush, Harness } from "./harness.js";

describe("GpuScheduler: statistics", () => {
  it("measures waits, holds, unload and reload times, grants and batches", async () => {
    const h = new Harness({ manualClock: true });
    const start = h.clock.t;
    h.fake.unloadCostMs = 2_000;
    h.fake.reloadCostMs = 3_000;

    const d1 = await h.acquire("diffusion", "d1"); // waits for the 2 s unload
    h.clock.advance(1_000);
    const c1 = h.acquire("llm", "c1");
    await flush();
    h.clock.advance(500);
    expect(h.scheduler.stats().queue).toEqual([{ jobId: "c1", phase: "llm", position: 1, waitingMs: 500 }]);
    expect(h.scheduler.stats().gpu).toEqual({ kind: "diffusion", jobId: "d1", since: start + 2_000 });

    h.clock.advance(8_500); // d1 held for 10 s
    await h.release(d1); // 3 s reload: c1 waited 8.5 + 0.5 + 3 = 12 s
    const c1Lease = await c1;
    h.clock.advance(500);
    await h.release(c1Lease);
    await h.release(await h.acquire("llm", "c2")); // no wait

    const stats = h.scheduler.stats();
    expect(stats.unloads).toEqual({ count: 1, meanMs: 2_000, lastMs: 2_000, maxMs: 2_000 });
    expect(stats.reloads).toEqual({ count: 1, meanMs: 3_000, lastMs: 3_000, maxMs: 3_000 });
    expect(stats.waits.diffusion).toEqual({ count: 1, meanMs: 2_000, lastMs: 2_000, maxMs: 2_000 });
    expect(stats.waits.llm).toEqual({ count: 2, meanMs: 6_000, lastMs: 0, maxMs: 12_000 });
    expect(stats.holds.diffusion).toMatchObject({ count: 1, meanMs: 10_000 });
    expect(stats.holds.llm).toMatchObject({ count: 2, meanMs: 250, maxMs: 500 });
    expect(stats.grants).toEqual({ llm: 2, diffusion: 1 });
    expect(stats.diffusionBatches).toEqual({ count: 1, jobs: 1, lastSize: 1, maxSize: 1 });
    expect(stats.failures).toEqual({ unloads: 0, reloads: 0, last: undefined });
    expect(stats.rejected).toEqual({ queueFull: 0, aborted: 0, closed: 0, conflicts: 0 });
    expect(stats.llm).toMatchObject({ state: "resident", since: start + 2_000 + 10_000 + 3_000 });
    expect(stats.gpu).toEqual({ kind: "idle" });
    expect(stats.queue).toEqual([]);
  });

  it("gives a compact state snapshot", async () => {
    const h = new Harness();
    const d1 = await h.acquire("diffusion", "d1");
    void h.acquire("llm", "c1");
    expect(h.scheduler.state()).toEqual({
      llm: "unloaded",
      gpu: { kind: "diffusion", jobId: "d1", since: expect.any(Number) },
      queue: [{ jobId: "c1", phase: "llm" }],
      batchJobs: 1,
      closing: false,
    });
    await h.release(d1);
    await flush();
    expect(h.scheduler.state()).toMatchObject({ llm: "resident", gpu: { kind: "llm", leases: 1, jobIds: ["c1"] }, batchJobs: undefined });
  });
});
