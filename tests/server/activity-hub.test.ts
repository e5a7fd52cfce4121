import { describe, expect, it } from "vitest";
import type { GpuSchedulerState } from "../../src/gpu/index.js";
import type { JobObserver } from "../../src/jobs/index.js";
import { ActivityHub, type ActivityDelivery } from "../../src/server/activity/activity-hub.js";
import { EventRing } from "../../src/server/activity/event-ring.js";

/** The hub's bookkeeping without a server: a scheduler double whose state a test moves. */
function fakeScheduler() {
  let state: GpuSchedulerState = { llm: "resident", gpu: { kind: "idle" }, queue: [], batchJobs: undefined, closing: false };
  const listeners = new Set<(s: GpuSchedulerState) => void>();
  return {
    state: () => state,
    onStateChange(listener: (s: GpuSchedulerState) => void) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    /** One decision: the hub is told synchronously here (the real scheduler: a microtask later). */
    set(next: Partial<GpuSchedulerState>) {
      state = { ...state, ...next };
      for (const listener of listeners) listener(state);
    },
  };
}

const noJobs = { observe: (_: JobObserver) => () => undefined, get: () => undefined };

function hubWith(ring = { maxEvents: 4, maxBytes: 1_000_000 }, maxBacklog?: number) {
  const scheduler = fakeScheduler();
  const hub = new ActivityHub({ scheduler, runner: noJobs, backendOf: () => undefined, ring, maxBacklog });
  // Each toggle is two events: a queue change, and back.
  const toggle = (jobId: string) => {
    scheduler.set({ queue: [{ jobId, phase: "llm" }] });
    scheduler.set({ queue: [] });
  };
  return { hub, scheduler, toggle };
}

async function take(stream: AsyncGenerator<ActivityDelivery>, n: number): Promise<ActivityDelivery[]> {
  const out: ActivityDelivery[] = [];
  while (out.length < n) {
    const next = await stream.next();
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

describe("EventRing", () => {
  it("hands out monotonic ids and the events after one, until they fall out", () => {
    const ring = new EventRing<string>({ maxEvents: 3, maxBytes: 100 }, (v) => v.length);
    expect(ring.after(0)).toEqual([]);
    for (const value of ["a", "b", "c", "d"]) ring.push(value);
    expect(ring.lastId).toBe(4);
    expect(ring.after(4)).toEqual([]);
    expect(ring.after(2)).toEqual([
      { id: 3, value: "c" },
      { id: 4, value: "d" },
    ]);
    expect(ring.after(1)).toEqual([
      { id: 2, value: "b" },
      { id: 3, value: "c" },
      { id: 4, value: "d" },
    ]);
    // Event 1 is gone: after(0) cannot be answered without a hole.
    expect(ring.after(0)).toBeUndefined();
    // Never given out.
    expect(ring.after(5)).toBeUndefined();
  });

  it("is bounded by bytes too, always keeping the newest", () => {
    const ring = new EventRing<string>({ maxEvents: 100, maxBytes: 10 }, (v) => v.length);
    ring.push("xxxxxx");
    ring.push("yyyyyy");
    expect(ring.length).toBe(1);
    ring.push("z".repeat(50));
    expect(ring.after(2)).toEqual([{ id: 3, value: "z".repeat(50) }]);
  });
});

describe("ActivityHub.follow", () => {
  it("resumes from an id it still holds, and resets (then a snapshot) from one it has dropped", async () => {
    const { hub, toggle } = hubWith();
    toggle("a"); // events 1, 2
    toggle("b"); // events 3, 4
    const resumed = await take(hub.follow(hub.eventId(2)), 2);
    expect(resumed.map((d) => d.kind === "event" && d.id)).toEqual([3, 4]);

    toggle("c"); // events 5, 6: the ring (4) no longer holds 1 and 2
    const reset = await take(hub.follow(hub.eventId(1)), 2);
    expect(reset[0]).toMatchObject({ kind: "reset", lastId: 6 });
    expect(reset[1]).toMatchObject({ kind: "snapshot", snapshot: { lastId: 6, gpu: { queue: [] } } });
    // Held: 3..6, so after(2) still works.
    const still = await take(hub.follow(hub.eventId(2)), 4);
    expect(still.map((d) => d.kind === "event" && d.id)).toEqual([3, 4, 5, 6]);
  });

  it("goes on live after the past, without a gap between them", async () => {
    const { hub, toggle } = hubWith({ maxEvents: 100, maxBytes: 1_000_000 });
    toggle("a");
    const stream = hub.follow(hub.eventId(1));
    const first = await stream.next(); // event 2, from the ring; the listener is in place now
    toggle("b");
    const rest = await take(stream, 2);
    expect([first.value, ...rest].map((d) => (d as { id: number }).id)).toEqual([2, 3, 4]);
    await stream.return(undefined);
  });

  it("ends the stream of a follower that falls too far behind (it resumes by id)", async () => {
    const { hub, toggle } = hubWith({ maxEvents: 100, maxBytes: 1_000_000 }, 3);
    const stream = hub.follow(undefined);
    expect((await stream.next()).value).toMatchObject({ kind: "snapshot" });
    toggle("a");
    toggle("b"); // four events: one more than it may hold back
    const left = await take(stream, 10);
    expect(left.length).toBeLessThanOrEqual(3);
    expect((await stream.next()).done).toBe(true);
    // What it missed is still in the ring.
    const lastRead = left.at(-1) as { id: number } | undefined;
    const caughtUp = await take(hub.follow(hub.eventId(lastRead?.id ?? 0)), 4 - left.length);
    expect(caughtUp.map((d) => (d as { id: number }).id)).toEqual([...Array(4 - left.length)].map((_, i) => (lastRead?.id ?? 0) + 1 + i));
  });

  it("counts how long each queued call has waited from when it joined, and labels gateway calls", () => {
    let now = 1_000;
    const scheduler = fakeScheduler();
    const hub = new ActivityHub({ scheduler, runner: noJobs, backendOf: () => undefined, now: () => now });
    hub.callAdmitted({ id: "ollama-1", via: "ollama", route: "/api/chat", model: "qwen2.5:3b" });
    scheduler.set({ gpu: { kind: "diffusion", jobId: "job-1", since: now }, queue: [{ jobId: "ollama-1", phase: "llm" }] });
    now = 5_000;
    scheduler.set({ queue: [{ jobId: "job-2", phase: "diffusion" }, { jobId: "ollama-1", phase: "llm" }] });
    expect(hub.snapshot().gpu.queue).toEqual([
      { jobId: "job-2", phase: "diffusion", position: 1, since: 5_000, label: "image job" },
      { jobId: "ollama-1", phase: "llm", position: 2, since: 1_000, label: "/api/chat qwen2.5:3b" },
    ]);
    hub.callEnded("ollama-1", { status: 200, outcome: "completed" });
    hub.callEnded("ollama-1", { status: 500, outcome: "twice" });
    expect(hub.snapshot().calls).toEqual([]);
    hub.close();
  });
});
