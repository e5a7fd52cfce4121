import { describe, expect, it } from "vitest";
import type { DiffugenDeps } from "../../../graphs/diffugen/dependencies.js";
import { createRunContext, isRunContext, LeaseSlot } from "../../../graphs/diffugen/run-context.js";
import type { GpuEventListener } from "../../../src/gpu/gpu-events.js";
import { GrantedLease, type GpuLease, type ReleaseOutcome } from "../../../src/gpu/gpu-lease.js";

/**
 * The diffusion lease spans three nodes (unload takes it, diffuse uses and gives it back,
 * reload waits for what that set off). These pin down the rules that keep it from ever
 * outliving its run, with a lease whose release the test counts.
 */

function countedLease(outcome: ReleaseOutcome = { kind: "llm_reloaded", report: { reachable: true, model: "qwen2.5:3b", durationMs: 5 } }) {
  const lease = new GrantedLease("job-1", "diffusion", 0, 0, async () => {
    lease.releases += 1;
    return outcome;
  }) as GrantedLease & { releases: number };
  lease.releases = 0;
  return lease;
}

describe("LeaseSlot", () => {
  it("an abort between nodes (held, not yet claimed by diffuse) gives the GPU back at once", () => {
    const run = new AbortController();
    const slot = new LeaseSlot(run.signal);
    const lease = countedLease();
    slot.hold(lease);
    expect(slot.holding).toBe(true);
    run.abort(new Error("client went away"));
    expect(lease.released).toBe(true);
    expect(slot.holding).toBe(false);
  });

  it("a run already aborted when the lease arrives releases it on the spot", () => {
    const run = new AbortController();
    run.abort();
    const slot = new LeaseSlot(run.signal);
    const lease = countedLease();
    slot.hold(lease);
    expect(lease.released).toBe(true);
  });

  it("once diffuse has claimed it, an abort leaves it alone: diffuse releases after sd-cli has exited", async () => {
    const run = new AbortController();
    const slot = new LeaseSlot(run.signal);
    const lease = countedLease();
    slot.hold(lease);
    expect(slot.claim()).toBe(lease);
    run.abort();
    expect(lease.released).toBe(false);
    await slot.release();
    expect(lease.released).toBe(true);
  });

  it("release is idempotent and reload gets what it set off, once", async () => {
    const slot = new LeaseSlot(new AbortController().signal);
    const lease = countedLease({ kind: "handed_over", toJobId: "job-2" });
    slot.hold(lease);
    slot.claim();
    const first = slot.release();
    expect(slot.release()).toBe(first);
    expect(await slot.takeOutcome()).toEqual({ kind: "handed_over", toJobId: "job-2" });
    expect(slot.takeOutcome()).toBeUndefined();
    expect(lease.releases).toBe(1);
  });

  it("diffuse without a lease finds none to claim", () => {
    expect(new LeaseSlot(new AbortController().signal).claim()).toBeUndefined();
  });
});

describe("LeaseSlot.requestEarly (refine asks, unload waits)", () => {
  /** An acquire the test answers by hand, with the scheduler's event sink it was given. */
  function manualAcquire() {
    const calls: { onEvent: GpuEventListener; grant(lease: GpuLease): void; fail(err: Error): void }[] = [];
    const acquire = (onEvent: GpuEventListener) =>
      new Promise<GpuLease>((grant, fail) => {
        calls.push({ onEvent, grant, fail });
      });
    return { acquire, calls };
  }

  it("asks at once; the grant is held as it comes; the waiter hears every event, in order, then gets the lease", async () => {
    const slot = new LeaseSlot(new AbortController().signal);
    const { acquire, calls } = manualAcquire();
    slot.requestEarly(acquire);
    expect(calls).toHaveLength(1);
    calls[0]!.onEvent({ type: "queued", phase: "diffusion", position: 1, ahead: 0 });
    calls[0]!.onEvent({ type: "unloading_llm" });
    const lease = countedLease();
    calls[0]!.grant(lease);
    await new Promise((r) => setImmediate(r));
    expect(slot.holding).toBe(true);

    const heard: string[] = [];
    const early = slot.takeEarly()!;
    expect(slot.takeEarly()).toBeUndefined();
    const granted = early.granted((event) => heard.push(event.type));
    expect(heard).toEqual(["queued", "unloading_llm"]);
    expect(await granted).toBe(lease);
    expect(slot.claim()).toBe(lease);
  });

  it("events after the waiter listens go straight to it", async () => {
    const slot = new LeaseSlot(new AbortController().signal);
    const { acquire, calls } = manualAcquire();
    slot.requestEarly(acquire);
    const heard: string[] = [];
    const granted = slot.takeEarly()!.granted((event) => heard.push(event.type));
    calls[0]!.onEvent({ type: "unloading_llm" });
    calls[0]!.onEvent({ type: "llm_unloaded", durationMs: 200, models: ["qwen2.5:3b"], reachable: true });
    calls[0]!.grant(countedLease());
    await granted;
    expect(heard).toEqual(["unloading_llm", "llm_unloaded"]);
  });

  it("a run aborted before unload waits still gives a lease granted later back at once", async () => {
    const run = new AbortController();
    const slot = new LeaseSlot(run.signal);
    const { acquire, calls } = manualAcquire();
    slot.requestEarly(acquire);
    run.abort(new Error("client went away"));
    const lease = countedLease();
    calls[0]!.grant(lease);
    await new Promise((r) => setImmediate(r));
    expect(lease.released).toBe(true);
    expect(slot.holding).toBe(false);
  });

  it("a refused acquire rejects the waiter with the scheduler's error, and nothing is left unhandled", async () => {
    const slot = new LeaseSlot(new AbortController().signal);
    const { acquire, calls } = manualAcquire();
    slot.requestEarly(acquire);
    calls[0]!.fail(new Error("the LLM would not leave VRAM"));
    // Nobody waits yet: no unhandled rejection (vitest fails the run on one).
    await new Promise((r) => setImmediate(r));
    await expect(slot.takeEarly()!.granted(() => undefined)).rejects.toThrow("the LLM would not leave VRAM");
    expect(slot.holding).toBe(false);
  });

  it("an acquire that throws at once counts as refused", async () => {
    const slot = new LeaseSlot(new AbortController().signal);
    slot.requestEarly(() => {
      throw new Error("queue full");
    });
    await expect(slot.takeEarly()!.granted(() => undefined)).rejects.toThrow("queue full");
  });
});

describe("createRunContext", () => {
  const deps = {} as DiffugenDeps;

  it("gives each run its own lease slot and the signal it was started with", () => {
    const run = new AbortController();
    const a = createRunContext(deps, run.signal);
    const b = createRunContext(deps, run.signal);
    expect(a.signal).toBe(run.signal);
    expect(a.lease).not.toBe(b.lease);
    expect(isRunContext(a)).toBe(true);
  });

  it("a bare {deps} (the old way) is not a run context", () => {
    expect(isRunContext({ deps })).toBe(false);
    expect(isRunContext(undefined)).toBe(false);
  });
});
