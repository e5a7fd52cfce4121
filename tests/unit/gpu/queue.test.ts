import { describe, expect, it } from "vitest";
import { AcquireAbortedError, QueueFullError, SchedulerClosedError } from "../../../src/gpu/index.js";
import { flush, Harness } from "./harness.js";

describe("GpuScheduler: the queue", () => {
  it("tells waiting jobs their place in line and updates it as jobs ahead leave", async () => {
    const h = new Harness();
    const d1 = await h.acquire("diffusion", "d1");
    const waiting = ["d2", "d3", "d4"].map((id) => h.acquire("diffusion", id));
    await flush();
    expect(h.events("d2")).toEqual([{ type: "queued", phase: "diffusion", position: 1, ahead: 0 }]);
    expect(h.events("d4")).toEqual([{ type: "queued", phase: "diffusion", position: 3, ahead: 2 }]);

    await h.release(d1); // d2 gets the GPU: d3 and d4 move up
    await flush();
    expect(h.events("d3").at(-1)).toEqual({ type: "queued", phase: "diffusion", position: 1, ahead: 0 });
    expect(h.events("d4").at(-1)).toEqual({ type: "queued", phase: "diffusion", position: 2, ahead: 1 });
    expect(h.eventTypes("d2")).toEqual(["queued", "granted"]);
    for (const pending of waiting) await h.release(await pending);
  });

  it("takes an aborted job out of the queue at once and moves the others up", async () => {
    const h = new Harness();
    const d1 = await h.acquire("diffusion", "d1");
    const controller = new AbortController();
    const d2 = h.acquire("diffusion", "d2", { signal: controller.signal });
    const d3 = h.acquire("diffusion", "d3");
    await flush();

    controller.abort(new Error("client went away"));
    expect(h.scheduler.state().queue).toEqual([{ jobId: "d3", phase: "diffusion" }]); // synchronously
    const error = await d2.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AcquireAbortedError);
    expect(error).toMatchObject({ name: "AbortError", jobId: "d2", phase: "diffusion" });
    expect((error as Error).cause).toMatchObject({ message: "client went away" });
    await flush();
    expect(h.events("d3").at(-1)).toEqual({ type: "queued", phase: "diffusion", position: 1, ahead: 0 });

    await h.release(d1);
    await h.release(await d3);
    expect(h.grants).toEqual(["d1", "d3"]);
    expect(h.scheduler.stats().rejected.aborted).toBe(1);
    expect(h.fake.violations).toEqual([]);
  });

  it("rejects at once when the signal is already aborted", async () => {
    const h = new Harness();
    await expect(h.acquire("llm", "x", { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AcquireAbortedError);
    expect(h.scheduler.state().queue).toEqual([]);
  });

  it("ignores an abort after the grant: the job releases its lease itself", async () => {
    const h = new Harness();
    const controller = new AbortController();
    const lease = await h.acquire("diffusion", "d1", { signal: controller.signal });
    controller.abort();
    await flush();
    expect(h.scheduler.state().gpu).toMatchObject({ kind: "diffusion", jobId: "d1" });
    await h.release(lease);
  });

  it("finishes an unload whose job gave up, then hands the GPU to the next diffusion job", async () => {
    const h = new Harness();
    h.fake.holdUnloads = true;
    const controller = new AbortController();
    const d1 = h.acquire("diffusion", "d1", { signal: controller.signal });
    const d2 = h.acquire("diffusion", "d2");
    await flush();
    expect(h.scheduler.state().llm).toBe("unloading");

    controller.abort();
    await expect(d1).rejects.toMatchObject({ name: "AbortError" });
    expect(h.scheduler.state().llm).toBe("unloading"); // not left half-done
    h.fake.finishUnload();
    const lease = await d2;
    expect(h.fake.calls).toEqual(["unload"]);
    await flush();
    expect(h.eventTypes("d2")).toEqual(["queued", "queued", "llm_unloaded", "granted"]);
    await h.release(lease);
    expect(h.fake.calls).toEqual(["unload", "reload"]);
    expect(h.fake.violations).toEqual([]);
  });

  it("finishes an unload whose job gave up, then reloads when nobody else wants diffusion", async () => {
    const h = new Harness();
    h.fake.holdUnloads = true;
    const controller = new AbortController();
    const d1 = h.acquire("diffusion", "d1", { signal: controller.signal });
    const chat = h.acquire("llm", "chat");
    await flush();
    controller.abort();
    await expect(d1).rejects.toBeInstanceOf(AcquireAbortedError);
    h.fake.finishUnload();
    const lease = await chat;
    expect(h.fake.calls).toEqual(["unload", "reload"]);
    expect(h.scheduler.state().llm).toBe("resident");
    await h.release(lease);
    await h.scheduler.whenSettled();
    expect(h.scheduler.stats().diffusionBatches).toMatchObject({ count: 1, jobs: 0, lastSize: 0 });
    expect(h.fake.violations).toEqual([]);
  });

  it("refuses beyond maxQueue waiting jobs with QueueFullError and a Retry-After estimate", async () => {
    const h = new Harness({ maxQueue: 2, manualClock: true });
    // Measure one diffusion job of 30 s (unload 2 s, reload 4 s).
    h.fake.unloadCostMs = 2_000;
    h.fake.reloadCostMs = 4_000;
    const first = await h.acquire("diffusion", "warm");
    h.clock.advance(30_000);
    await h.release(first);

    const holder = await h.acquire("diffusion", "d1");
    h.clock.advance(10_000);
    const waiting = [h.acquire("diffusion", "d2"), h.acquire("llm", "c1")];
    const error = await h.acquire("diffusion", "d3").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QueueFullError);
    // rest of d1 (30 - 10) + d2 (30) + the LLM job (10 s default) + unload 2 + reload 4 = 66 s
    expect(error).toMatchObject({ code: "GPU_QUEUE_FULL", retryAfterSeconds: 66, queueLength: 2, maxQueue: 2 });
    expect(h.scheduler.state().queue.map((q) => q.jobId)).toEqual(["d2", "c1"]);
    expect(h.scheduler.stats().rejected.queueFull).toBe(1);

    await h.release(holder);
    for (const pending of waiting) await h.release(await pending);
  });

  it("close() rejects waiting jobs and new acquires, waits for the holder, and leaves the LLM loaded", async () => {
    const h = new Harness();
    const lease = await h.acquire("diffusion", "d1");
    const waiting = h.acquire("diffusion", "d2");
    const closed = h.scheduler.close();
    await expect(waiting).rejects.toBeInstanceOf(SchedulerClosedError);
    await expect(h.acquire("llm", "late")).rejects.toMatchObject({ code: "GPU_SCHEDULER_CLOSED" });

    let done = false;
    void closed.then(() => (done = true));
    await flush();
    expect(done).toBe(false);
    await h.release(lease);
    await closed;
    expect(h.scheduler.state()).toMatchObject({ llm: "resident", gpu: { kind: "idle" }, closing: true });
    expect(h.fake.calls).toEqual(["unload", "reload"]);
    expect(h.scheduler.stats().rejected.closed).toBe(2);
  });

  it("drain() serves the jobs already waiting, then settles with the LLM loaded", async () => {
    const h = new Harness();
    const d1 = await h.acquire("diffusion", "d1");
    const d2 = h.acquire("diffusion", "d2");
    const drained = h.scheduler.drain();
    await expect(h.acquire("llm", "late")).rejects.toBeInstanceOf(SchedulerClosedError);
    await h.release(d1);
    await h.release(await d2);
    await drained;
    expect(h.grants).toEqual(["d1", "d2"]);
    expect(h.scheduler.state().llm).toBe("resident");
  });
});
