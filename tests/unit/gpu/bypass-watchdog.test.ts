import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { BypassWatchdog, type GateBypass, type GpuHolderState, type HolderChangeListener } from "../../../src/gpu/index.js";
import { flush, Harness } from "./harness.js";

/**
 * The bypass watchdog with a fake /api/ps and vitest's fake clock: which models it reports,
 * how often, and that it polls only while diffusion holds the GPU. No real waiting.
 */

/** /api/ps as the test sets it; counts the polls. */
class FakePs {
  models: string[] = [];
  polls = 0;
  /** When set, the next poll waits for the test to answer it. */
  hold = false;
  #held: ((models: string[]) => void) | undefined;
  down = false;

  listResident = async (signal?: AbortSignal): Promise<{ name: string }[]> => {
    this.polls += 1;
    if (this.down) throw new Error("connect ECONNREFUSED 127.0.0.1:11434");
    const models = this.hold ? await new Promise<string[]>((resolve) => (this.#held = resolve)) : this.models;
    signal?.throwIfAborted();
    return models.map((name) => ({ name }));
  };

  answerHeld(models: string[]): void {
    this.hold = false;
    this.#held?.(models);
  }
}

/** Stands in for the scheduler: the test says who holds the GPU. */
class FakeHolder {
  readonly listeners = new Set<HolderChangeListener>();
  onHolderChange(listener: HolderChangeListener): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }
  set(holder: GpuHolderState): void {
    for (const listener of this.listeners) listener(holder);
  }
  diffusion(jobId: string): void {
    this.set({ kind: "diffusion", jobId, since: Date.now() });
  }
  idle(): void {
    this.set({ kind: "idle" });
  }
}

let ps: FakePs;
let holder: FakeHolder;
let warnings: { message: string; bypass: GateBypass }[];

/** First poll at the grant (firstPollMs 0): these tests are about what the polls find. */
function watchdog(): BypassWatchdog {
  return new BypassWatchdog({
    scheduler: holder,
    probe: ps,
    firstPollMs: 0,
    warn: (message, bypass) => warnings.push({ message, bypass }),
    advice: "Route that client through DiffuGen: set its Ollama base URL to http://127.0.0.1:5199/ollama.",
  });
}

beforeEach(() => {
  // setImmediate stays real: flush() lets the scheduler's microtasks and promises settle with it.
  vi.useFakeTimers({ now: new Date("2026-03-01T12:00:00Z"), toFake: ["setTimeout", "clearTimeout", "Date"] });
  ps = new FakePs();
  holder = new FakeHolder();
  warnings = [];
});
afterEach(() => {
  vi.useRealTimers();
});

describe("BypassWatchdog", () => {
  it("by default the first poll comes 100 ms after the grant, off the path where sd.cpp starts", async () => {
    const gate = new BypassWatchdog({ scheduler: holder, probe: ps, warn: (message, bypass) => warnings.push({ message, bypass }), advice: "" });
    ps.models = ["phi3:mini"];
    holder.diffusion("d1");
    await vi.advanceTimersByTimeAsync(99);
    expect(ps.polls).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(ps.polls).toBe(1);
    expect(warnings.map((w) => w.bypass.model)).toEqual(["phi3:mini"]);
    gate.stop();
  });

  it("polls /api/ps about once a second, only while diffusion holds the GPU", async () => {
    const gate = watchdog();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(ps.polls).toBe(0);

    holder.diffusion("d1");
    await vi.advanceTimersByTimeAsync(0);
    expect(ps.polls).toBe(1); // at once
    expect(gate.status().watching).toBe(true);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(ps.polls).toBe(4);

    holder.idle();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(ps.polls).toBe(4);
    expect(gate.status()).toEqual({ bypasses: 0, byModel: {}, last: undefined, watching: false });
    expect(vi.getTimerCount()).toBe(0);
  });

  it("reports a model that appears while drawing once, naming it and saying how to route its client", async () => {
    const gate = watchdog();
    holder.diffusion("job-1");
    await vi.advanceTimersByTimeAsync(1_500);
    expect(warnings).toEqual([]);

    ps.models = ["llama3.2:1b"];
    await vi.advanceTimersByTimeAsync(1_000);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.message).toMatch(/^Ollama loaded llama3\.2:1b while job-1 was drawing: a client called Ollama directly, not through DiffuGen/);
    expect(warnings[0]!.message).toContain("set its Ollama base URL to http://127.0.0.1:5199/ollama");
    const at = Date.parse("2026-03-01T12:00:02Z");
    expect(warnings[0]!.bypass).toEqual({ model: "llama3.2:1b", at, jobId: "job-1" });

    // Still listed a second and five seconds later: the same load, not a new bypass.
    await vi.advanceTimersByTimeAsync(5_000);
    expect(warnings).toHaveLength(1);
    expect(gate.status()).toEqual({
      bypasses: 1,
      byModel: { "llama3.2:1b": 1 },
      last: { model: "llama3.2:1b", at, jobId: "job-1" },
      watching: true,
    });
  });

  it("a model already listed when diffusion began (one the unload could not see) is reported once, not every second", async () => {
    const gate = watchdog();
    ps.models = ["phi3:mini"];
    holder.diffusion("d1");
    await vi.advanceTimersByTimeAsync(4_000);
    expect(warnings.map((w) => w.bypass.model)).toEqual(["phi3:mini"]);
    expect(gate.status().bypasses).toBe(1);
  });

  it("beside the LLM (VRAM_POLICY=fit), the models resident when the drawing was decided are expected; another one is a bypass", async () => {
    const gate = watchdog();
    ps.models = ["qwen2.5:3b"];
    holder.set({ kind: "diffusion", jobId: "d1", since: Date.now(), besideLlm: ["qwen2.5:3b"] });
    await vi.advanceTimersByTimeAsync(3_000);
    expect(warnings).toEqual([]);
    ps.models = ["qwen2.5:3b", "llama3.2:1b"];
    await vi.advanceTimersByTimeAsync(1_000);
    expect(warnings.map((w) => w.bypass.model)).toEqual(["llama3.2:1b"]);
    expect(gate.status().bypasses).toBe(1);
  });

  it("a model that leaves and is loaded again is a second bypass; two models are two", async () => {
    const gate = watchdog();
    holder.diffusion("d1");
    ps.models = ["llama3.2:1b", "phi3:mini"];
    await vi.advanceTimersByTimeAsync(1_000);
    ps.models = [];
    await vi.advanceTimersByTimeAsync(1_000);
    ps.models = ["llama3.2:1b"];
    await vi.advanceTimersByTimeAsync(1_000);
    expect(warnings.map((w) => w.bypass.model)).toEqual(["llama3.2:1b", "phi3:mini", "llama3.2:1b"]);
    expect(gate.status().byModel).toEqual({ "llama3.2:1b": 2, "phi3:mini": 1 });
  });

  it("keeps watching from one diffusion job to the next (a batch): a model still listed is not reported again", async () => {
    watchdog();
    ps.models = ["llama3.2:1b"];
    holder.diffusion("d1");
    await vi.advanceTimersByTimeAsync(1_000);
    holder.diffusion("d2");
    await vi.advanceTimersByTimeAsync(3_000);
    expect(warnings.map((w) => w.bypass)).toEqual([{ model: "llama3.2:1b", at: expect.any(Number), jobId: "d1" }]);

    ps.models = ["llama3.2:1b", "phi3:mini"];
    await vi.advanceTimersByTimeAsync(1_000);
    expect(warnings.at(-1)!.bypass).toMatchObject({ model: "phi3:mini", jobId: "d2" });
  });

  it("what a poll answers after diffusion ended is the LLM coming back, not a bypass", async () => {
    const gate = watchdog();
    ps.hold = true;
    holder.diffusion("d1");
    await vi.advanceTimersByTimeAsync(0);
    expect(ps.polls).toBe(1);
    holder.idle(); // the scheduler reloads the LLM now
    ps.answerHeld(["qwen2.5:3b"]);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(warnings).toEqual([]);
    expect(gate.status().bypasses).toBe(0);
    expect(ps.polls).toBe(1);
  });

  it("Ollama not answering is no bypass, and the watch goes on", async () => {
    watchdog();
    ps.down = true;
    holder.diffusion("d1");
    await vi.advanceTimersByTimeAsync(2_000);
    expect(ps.polls).toBe(3);
    ps.down = false;
    ps.models = ["llama3.2:1b"];
    await vi.advanceTimersByTimeAsync(1_000);
    expect(warnings.map((w) => w.bypass.model)).toEqual(["llama3.2:1b"]);
  });

  it("stop() ends the polling and the subscription for good; status() still answers", async () => {
    const gate = watchdog();
    ps.models = ["llama3.2:1b"];
    holder.diffusion("d1");
    await vi.advanceTimersByTimeAsync(0);
    gate.stop();
    expect(vi.getTimerCount()).toBe(0);
    expect(holder.listeners.size).toBe(0);
    holder.diffusion("d2");
    await vi.advanceTimersByTimeAsync(5_000);
    expect(ps.polls).toBe(1);
    expect(gate.status()).toMatchObject({ bypasses: 1, watching: false });
  });

  it("a warn that throws does not end the watch: the next bypass is still counted", async () => {
    const gate = new BypassWatchdog({
      scheduler: holder,
      probe: ps,
      warn: () => {
        throw new Error("log closed");
      },
      advice: "",
    });
    holder.diffusion("d1");
    ps.models = ["llama3.2:1b"];
    await vi.advanceTimersByTimeAsync(1_000);
    ps.models = ["llama3.2:1b", "phi3:mini"];
    await vi.advanceTimersByTimeAsync(1_000);
    expect(gate.status().bypasses).toBe(2);
  });
});

describe("BypassWatchdog on the real GpuScheduler", () => {
  it("starts when a diffusion lease is granted and stops when the LLM comes back", async () => {
    const h = new Harness();
    const gate = new BypassWatchdog({ scheduler: h.scheduler, probe: ps, warn: () => {}, advice: "", firstPollMs: 0 });

    const lease = await h.acquire("diffusion", "d1");
    await flush();
    expect(gate.status().watching).toBe(true);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(ps.polls).toBe(3);

    await h.release(lease);
    await flush();
    expect(gate.status().watching).toBe(false);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(ps.polls).toBe(3);
    expect(h.fake.calls).toEqual(["unload", "reload"]);
  });
});
