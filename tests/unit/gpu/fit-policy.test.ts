import { describe, expect, it } from "vitest";
import { GpuScheduler, type FitAdvisor, type FitDecision, type GpuEvent, type VramNeed } from "../../../src/gpu/index.js";
import { FakeLlmResidency, ManualClock } from "./fake-llm-residency.js";
import { flush } from "./harness.js";

/** An advisor that answers from a table of needs against a fixed free amount, and counts its calls. */
function advisor(freeMiB: number, marginMiB = 768): FitAdvisor & { calls: (VramNeed | undefined)[] } {
  const calls: (VramNeed | undefined)[] = [];
  return {
    calls,
    async check(need): Promise<FitDecision> {
      calls.push(need);
      const fits = need !== undefined && need.mib + marginMiB <= freeMiB;
      return { fits, message: fits ? `fits beside qwen2.5:3b` : "needs the whole GPU", models: ["qwen2.5:3b"], needMiB: need?.mib, freeMiB };
    },
  };
}

function setup(fit: FitAdvisor | undefined) {
  const clock = new ManualClock();
  const llm = new FakeLlmResidency({ resident: true, clock });
  const scheduler = new GpuScheduler({ llm, fit });
  const events = new Map<string, GpuEvent[]>();
  const acquire = (phase: "llm" | "diffusion", jobId: string, more: { need?: VramNeed; exclusive?: boolean; model?: string } = {}) => {
    const list: GpuEvent[] = [];
    events.set(jobId, list);
    return scheduler.acquire(phase, { jobId, onEvent: (e) => list.push(e), ...more });
  };
  return { llm, scheduler, acquire, events };
}

const sd15: VramNeed = { key: "sd15|512x512|1|server", mib: 3000, estimated: false, model: "sd15" };
const sdxl: VramNeed = { key: "sdxl|1024x1024|1|server", mib: 7000, estimated: false, model: "sdxl" };

describe("VRAM_POLICY=fit in the GPU scheduler", () => {
  it("runs a drawing that fits beside the LLM without unloading, and LLM calls keep being granted meanwhile", async () => {
    const s = setup(advisor(9200));
    const drawing = await s.acquire("diffusion", "d1", { need: sd15 });
    expect(drawing.besideLlm).toBe(true);
    expect(s.llm.calls).toEqual([]);
    expect(s.scheduler.state().gpu).toMatchObject({ kind: "diffusion", jobId: "d1", besideLlm: ["qwen2.5:3b"] });

    // A chat that arrives mid-image is answered at once.
    const chat = await s.acquire("llm", "chat");
    expect(s.scheduler.state().gpu).toMatchObject({ kind: "diffusion", llmLeases: 1 });
    await chat.release();
    expect(await drawing.release()).toEqual({ kind: "llm_stayed" });
    await flush();
    expect(s.llm.calls).toEqual([]);
    expect(s.events.get("d1")!.map((e) => e.type)).toEqual(["queued", "fits_beside_llm", "granted"]);
    expect(s.scheduler.stats().fit).toMatchObject({ besideLlm: 1, wholeGpu: 0 });
    await s.scheduler.whenSettled();
  });

  it("swaps exactly as before when the drawing does not fit, and says why", async () => {
    const s = setup(advisor(6000));
    const drawing = await s.acquire("diffusion", "d1", { need: sdxl });
    expect(drawing.besideLlm).toBe(false);
    expect(s.llm.calls).toEqual(["unload"]);
    expect(await drawing.release()).toMatchObject({ kind: "llm_reloaded" });
    await flush();
    expect(s.events.get("d1")!.map((e) => e.type)).toEqual([
      "queued",
      "needs_whole_gpu",
      "unloading_llm",
      "llm_unloaded",
      "granted",
      "reloading_llm",
      "llm_reloaded",
    ]);
    expect(s.scheduler.stats().fit).toMatchObject({ besideLlm: 0, wholeGpu: 1 });
  });

  it("takes the whole GPU when asked (the retry after an out-of-memory), without asking the advisor", async () => {
    const fit = advisor(20_000);
    const s = setup(fit);
    const drawing = await s.acquire("diffusion", "d1", { need: sd15, exclusive: true });
    expect(fit.calls).toEqual([]);
    expect(drawing.besideLlm).toBe(false);
    expect(s.llm.calls).toEqual(["unload"]);
    await drawing.release();
  });

  it("serves, beside a drawing, only LLM calls for the models resident when the fit was decided", async () => {
    const s = setup(advisor(9200));
    const drawing = await s.acquire("diffusion", "d1", { need: sd15 });
    const other = s.acquire("llm", "embed", { model: "nomic-embed-text" });
    const same = await s.acquire("llm", "chat", { model: "qwen2.5:3b" });
    let otherGranted = false;
    void other.then(() => (otherGranted = true));
    await flush();
    expect(otherGranted).toBe(false);
    await same.release();
    await drawing.release();
    const lease = await other;
    expect(lease.phase).toBe("llm");
    await lease.release();
  });

  it("runs two drawings one after the other, each checked, never two at once", async () => {
    const s = setup(advisor(9200));
    const first = await s.acquire("diffusion", "d1", { need: sd15 });
    let secondGranted = false;
    const second = s.acquire("diffusion", "d2", { need: sd15 }).then((lease) => {
      secondGranted = true;
      return lease;
    });
    await flush();
    expect(secondGranted).toBe(false);
    await first.release();
    const lease = await second;
    expect(lease.besideLlm).toBe(true);
    await lease.release();
    expect(s.llm.calls).toEqual([]);
  });

  it("swaps when the advisor fails (the memory tool broke)", async () => {
    const s = setup({ check: async () => Promise.reject(new Error("nvidia-smi: No devices were found")) });
    const drawing = await s.acquire("diffusion", "d1", { need: sd15 });
    expect(drawing.besideLlm).toBe(false);
    expect(s.llm.calls).toEqual(["unload"]);
    await flush();
    const refusal = s.events.get("d1")!.find((e) => e.type === "needs_whole_gpu");
    expect(refusal).toMatchObject({ message: expect.stringContaining("No devices were found") });
    await drawing.release();
  });
});
