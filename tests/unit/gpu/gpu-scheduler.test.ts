import { describe, expect, it } from "vitest";
import { flush, Harness } from "./harness.js";

describe("GpuScheduler: swapping the LLM out and back", () => {
  it("unloads once before one diffusion job and reloads once after it", async () => {
    const h = new Harness();
    const lease = await h.acquire("diffusion", "d1");
    expect(h.fake.calls).toEqual(["unload"]);
    expect(h.scheduler.state()).toMatchObject({ llm: "unloaded", gpu: { kind: "diffusion", jobId: "d1" } });

    const outcome = await h.release(lease);
    expect(outcome).toMatchObject({ kind: "llm_reloaded", report: { model: "qwen2.5:3b", reachable: true } });
    expect(h.fake.calls).toEqual(["unload", "reload"]);
    expect(h.scheduler.state()).toMatchObject({ llm: "resident", gpu: { kind: "idle" }, queue: [] });
    await flush();
    expect(h.eventTypes("d1")).toEqual(["queued", "unloading_llm", "llm_unloaded", "granted", "reloading_llm", "llm_reloaded"]);
    expect(h.events("d1")[0]).toEqual({ type: "queued", phase: "diffusion", position: 1, ahead: 0 });
    expect(h.events("d1")[2]).toMatchObject({ type: "llm_unloaded", models: ["qwen2.5:3b"], reachable: true, freeVramMiB: 7900 });
    expect(h.fake.violations).toEqual([]);
  });

  it("grants an LLM lease at startup without touching Ollama (state unknown)", async () => {
    const h = new Harness();
    const lease = await h.acquire("llm", "chat");
    expect(h.fake.calls).toEqual([]);
    expect(h.scheduler.state()).toMatchObject({ llm: "unknown", gpu: { kind: "llm", leases: 1, jobIds: ["chat"] } });
    expect(await h.release(lease)).toEqual({ kind: "none" });
    await flush();
    expect(h.eventTypes("chat")).toEqual(["granted"]);
  });

  it("batches diffusion jobs queued together: 5 jobs, 1 unload, 1 reload", async () => {
    const h = new Harness();
    const leases = ["d1", "d2", "d3", "d4", "d5"].map((id) => h.acquire("diffusion", id));
    const outcomes = [];
    for (const pending of leases) outcomes.push(await h.release(await pending));

    expect(h.fake.calls).toEqual(["unload", "reload"]);
    expect(h.grants).toEqual(["d1", "d2", "d3", "d4", "d5"]);
    expect(outcomes.map((o) => o.kind)).toEqual(["handed_over", "handed_over", "handed_over", "handed_over", "llm_reloaded"]);
    expect(outcomes[0]).toEqual({ kind: "handed_over", toJobId: "d2" });
    expect(h.scheduler.stats().diffusionBatches).toEqual({ count: 1, jobs: 5, lastSize: 5, maxSize: 5 });
    expect(h.fake.violations).toEqual([]);
  });

  it("keeps a batch going past maxBatch when no LLM work waits", async () => {
    const h = new Harness({ maxBatch: 2 });
    const leases = ["d1", "d2", "d3", "d4"].map((id) => h.acquire("diffusion", id));
    for (const pending of leases) await h.release(await pending);
    expect(h.fake.calls).toEqual(["unload", "reload"]);
  });

  it("lets waiting LLM work in after maxBatch diffusion jobs, then resumes diffusion with an unload", async () => {
    const h = new Harness({ maxBatch: 2 });
    const diffusion = ["d1", "d2", "d3", "d4", "d5"].map((id) => h.acquire("diffusion", id));
    const chat = h.acquire("llm", "chat");

    await h.release(await diffusion[0]!);
    expect(await h.release(await diffusion[1]!)).toMatchObject({ kind: "llm_reloaded" });
    const chatLease = await chat;
    expect(h.grants).toEqual(["d1", "d2", "chat"]);
    expect(h.scheduler.state()).toMatchObject({ gpu: { kind: "llm" }, queue: [{ jobId: "d3" }, { jobId: "d4" }, { jobId: "d5" }] });

    await h.release(chatLease);
    for (const pending of diffusion.slice(2)) await h.release(await pending);
    expect(h.grants).toEqual(["d1", "d2", "chat", "d3", "d4", "d5"]);
    expect(h.fake.calls).toEqual(["unload", "reload", "unload", "reload"]);
    expect(h.scheduler.stats().diffusionBatches).toMatchObject({ count: 2, jobs: 5, lastSize: 3, maxSize: 3 });
    expect(h.fake.violations).toEqual([]);
  });

  it("lets a diffusion batch overtake LLM jobs that arrived during it (below maxBatch)", async () => {
    const h = new Harness({ maxBatch: 8 });
    const d1 = await h.acquire("diffusion", "d1");
    const chat = h.acquire("llm", "chat");
    const d2 = h.acquire("diffusion", "d2");
    await h.release(d1);
    await h.release(await d2);
    await h.release(await chat);
    expect(h.grants).toEqual(["d1", "d2", "chat"]);
    expect(h.fake.calls).toEqual(["unload", "reload"]);
  });

  it("shares the LLM among several leases and makes diffusion wait until all are released", async () => {
    const h = new Harness();
    const a = await h.acquire("llm", "a");
    const b = await h.acquire("llm", "b");
    const image = h.acquire("diffusion", "img");
    await flush();
    expect(h.fake.calls).toEqual([]);
    expect(h.scheduler.state().gpu).toMatchObject({ kind: "llm", leases: 2 });

    await h.release(a);
    await flush();
    expect(h.fake.calls).toEqual([]);
    await h.release(b);
    const lease = await image;
    expect(h.fake.calls).toEqual(["unload"]);
    await h.release(lease);
    expect(h.fake.violations).toEqual([]);
  });

  it("queues new LLM work behind a waiting diffusion job (no diffusion starvation)", async () => {
    const h = new Harness();
    const a = await h.acquire("llm", "a");
    const image = h.acquire("diffusion", "img");
    const late = h.acquire("llm", "late");
    await flush();
    expect(h.grants).toEqual(["a"]);
    expect(h.scheduler.state().queue).toEqual([
      { jobId: "img", phase: "diffusion" },
      { jobId: "late", phase: "llm" },
    ]);

    await h.release(a);
    const imageLease = await image;
    expect(h.grants).toEqual(["a", "img"]);
    await h.release(imageLease);
    await h.release(await late);
    expect(h.grants).toEqual(["a", "img", "late"]);
    expect(h.fake.calls).toEqual(["unload", "reload"]);
    await flush();
    // Second in line, then first once img got the GPU; then it hears about the reload
    // img's release triggered.
    expect(h.events("late").slice(0, 2)).toEqual([
      { type: "queued", phase: "llm", position: 2, ahead: 1 },
      { type: "queued", phase: "llm", position: 1, ahead: 0 },
    ]);
    expect(h.eventTypes("late")).toEqual(["queued", "queued", "reloading_llm", "llm_reloaded", "granted"]);
    expect(h.fake.violations).toEqual([]);
  });

  it("lets LLM work queued behind a diffusion job in at once when that job gives up", async () => {
    const h = new Harness();
    const a = await h.acquire("llm", "a");
    const controller = new AbortController();
    const image = h.acquire("diffusion", "img", { signal: controller.signal });
    const late = h.acquire("llm", "late");
    await flush();
    controller.abort();
    await expect(image).rejects.toMatchObject({ name: "AbortError" });
    const lateLease = await late;
    expect(h.scheduler.state().gpu).toMatchObject({ kind: "llm", leases: 2 });
    await h.release(a);
    await h.release(lateLease);
    expect(h.fake.calls).toEqual([]);
  });

  it("grants every LLM job waiting when the LLM comes back (they share it)", async () => {
    const h = new Harness();
    const image = await h.acquire("diffusion", "img");
    const chats = ["c1", "c2", "c3"].map((id) => h.acquire("llm", id));
    await h.release(image);
    const leases = await Promise.all(chats);
    expect(h.scheduler.state().gpu).toMatchObject({ kind: "llm", leases: 3 });
    for (const lease of leases) await h.release(lease);
    expect(h.fake.calls).toEqual(["unload", "reload"]);
    expect(h.fake.violations).toEqual([]);
  });

  it("unloads again for a diffusion job that arrives while the LLM is being reloaded", async () => {
    const h = new Harness();
    h.fake.reloadDelayMs = 5;
    const d1 = await h.acquire("diffusion", "d1");
    const released = h.release(d1);
    await flush();
    expect(h.scheduler.state().llm).toBe("loading");
    const d2 = h.acquire("diffusion", "d2");
    await released;
    await h.release(await d2);
    expect(h.fake.calls).toEqual(["unload", "reload", "unload", "reload"]);
    expect(h.scheduler.stats().diffusionBatches.count).toBe(2);
    expect(h.fake.violations).toEqual([]);
  });
});

describe("GpuScheduler: leases", () => {
  it("makes release idempotent: the same promise, one reload", async () => {
    const h = new Harness();
    const lease = await h.acquire("diffusion", "d1");
    const first = h.release(lease);
    const second = lease.release();
    expect(second).toBe(first);
    expect(lease.released).toBe(true);
    await first;
    expect(await lease.release()).toMatchObject({ kind: "llm_reloaded" });
    expect(h.fake.calls).toEqual(["unload", "reload"]);
    expect(h.scheduler.stats().holds.diffusion.count).toBe(1);
  });

  it("releases through Symbol.asyncDispose", async () => {
    const h = new Harness();
    const lease = await h.acquire("diffusion", "d1");
    h.fake.released("diffusion", "d1");
    await lease[Symbol.asyncDispose]();
    expect(lease.released).toBe(true);
    expect(h.scheduler.state()).toMatchObject({ llm: "resident", gpu: { kind: "idle" } });
  });

  it("refuses a diffusion lease to a job holding its own LLM lease instead of deadlocking", async () => {
    const h = new Harness();
    const lease = await h.acquire("llm", "job");
    await expect(h.acquire("diffusion", "job")).rejects.toMatchObject({ name: "LeaseConflictError", code: "GPU_LEASE_CONFLICT" });
    const second = await h.acquire("llm", "job"); // more LLM leases are fine
    await h.release(second);
    await h.release(lease);
    expect(h.scheduler.stats().rejected.conflicts).toBe(1);
  });

  it("survives an event listener that throws", async () => {
    const h = new Harness();
    const lease = await h.scheduler.acquire("diffusion", {
      jobId: "d1",
      onEvent: () => {
        throw new Error("listener bug");
      },
    });
    await lease.release();
    await flush();
    expect(h.scheduler.state()).toMatchObject({ llm: "resident", gpu: { kind: "idle" } });
    expect(h.logs.some((l) => l.message === "GPU event listener threw")).toBe(true);
  });
});
