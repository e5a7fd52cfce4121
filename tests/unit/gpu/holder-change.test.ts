import { describe, expect, it } from "vitest";
import type { GpuHolderState } from "../../../src/gpu/index.js";
import { flush, Harness } from "./harness.js";

/**
 * GpuScheduler.onHolderChange: how code outside the scheduler (the bypass watchdog) hears
 * that the GPU changed hands, without the scheduler keeping a timer or polling anything.
 */

function describeHolder(holder: GpuHolderState): string {
  return holder.kind === "diffusion" ? `diffusion:${holder.jobId}` : holder.kind;
}

function watch(h: Harness) {
  const seen: string[] = [];
  const stop = h.scheduler.onHolderChange((holder) => seen.push(describeHolder(holder)));
  return { seen, stop };
}

describe("GpuScheduler.onHolderChange", () => {
  it("tells each change of hands once: diffusion, straight to the next diffusion job of the batch, then idle", async () => {
    const h = new Harness();
    const { seen } = watch(h);
    const d1 = h.acquire("diffusion", "d1");
    const d2 = h.acquire("diffusion", "d2");
    await h.release(await d1);
    await h.release(await d2);
    await flush();
    expect(seen).toEqual(["diffusion:d1", "diffusion:d2", "idle"]);
    expect(h.fake.calls).toEqual(["unload", "reload"]);
  });

  it("the first LLM lease is a change, more joining it are not, and the last release is", async () => {
    const h = new Harness();
    const { seen } = watch(h);
    const a = await h.acquire("llm", "c1");
    const b = await h.acquire("llm", "c2");
    await flush();
    expect(seen).toEqual(["llm"]);
    await h.release(a);
    await flush();
    expect(seen).toEqual(["llm"]);
    await h.release(b);
    await flush();
    expect(seen).toEqual(["llm", "idle"]);
  });

  it("calls after the decision, in a microtask: not from inside acquire()", async () => {
    const h = new Harness();
    const { seen } = watch(h);
    const pending = h.scheduler.acquire("llm", { jobId: "c1" });
    expect(h.scheduler.state().gpu.kind).toBe("llm"); // granted synchronously...
    expect(seen).toEqual([]); // ...and told afterwards
    await flush();
    expect(seen).toEqual(["llm"]);
    await (await pending).release();
  });

  it("a listener that throws is logged and the others are still told; the returned function stops the calls", async () => {
    const h = new Harness();
    h.scheduler.onHolderChange(() => {
      throw new Error("broken listener");
    });
    const { seen, stop } = watch(h);
    const lease = await h.acquire("diffusion", "d1");
    await flush();
    expect(seen).toEqual(["diffusion:d1"]);
    expect(h.logs).toContainEqual({ message: "GPU holder listener threw", fields: { holder: "diffusion", error: "broken listener" } });
    stop();
    await h.release(lease);
    await flush();
    expect(seen).toEqual(["diffusion:d1"]);
    expect(h.fake.violations).toEqual([]);
  });
});
