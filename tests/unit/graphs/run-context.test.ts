import { describe, expect, it } from "vitest";
import type { DiffugenDeps } from "../../../graphs/diffugen/dependencies.js";
import { createRunContext, isRunContext, LeaseSlot } from "../../../graphs/diffugen/run-context.js";
import { GrantedLease, type ReleaseOutcome } from "../../../src/gpu/gpu-lease.js";

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
