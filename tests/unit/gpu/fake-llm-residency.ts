import type { LlmResidency, ReloadReport, UnloadReport } from "../../../src/gpu/llm-residency.js";
import type { GpuPhase } from "../../../src/gpu/gpu-events.js";

/**
 * An in-memory stand-in for the Ollama control plane that also plays the GPU: it knows
 * whether the LLM is resident and which leases the jobs hold, and records a violation
 * whenever the scheduler breaks the invariant:
 *
 * - a diffusion lease granted while the LLM is resident (sd.cpp would run out of memory);
 * - an LLM lease granted while the LLM is out, unless the last reload failed (then the
 *   scheduler had tried, and the job's own call reports the failure);
 * - LLM and diffusion leases held at once, or two diffusion leases;
 * - an unload while LLM leases are held, a reload while a diffusion lease is held, or two
 *   unload/reload calls overlapping.
 */
export class FakeLlmResidency implements LlmResidency {
  model = "qwen2.5:3b";
  resident: boolean;
  /** Real time an unload/reload takes (0: settles on the next microtasks). */
  unloadDelayMs = 0;
  reloadDelayMs = 0;
  /** Simulated time an unload/reload takes, added to `clock` when given. */
  unloadCostMs = 0;
  reloadCostMs = 0;
  /** When true, unloadAll() waits for the test to call finishUnload() or failUnload(). */
  holdUnloads = false;
  /** The next n unloads reject with an UnloadTimeoutError. */
  failNextUnloads = 0;
  /** The next n reloads reject. */
  failNextReloads = 0;
  /** Ollama down: unload resolves reachable:false, reload resolves reachable:false. */
  ollamaDown = false;

  readonly calls: ("unload" | "reload")[] = [];
  readonly violations: string[] = [];
  lastReloadFailed = false;

  readonly #leases: Record<GpuPhase, Map<string, number>> = { llm: new Map(), diffusion: new Map() };
  #inFlight: "unload" | "reload" | undefined;
  #pendingUnload: { resolve: () => void; reject: (error: Error) => void } | undefined;

  readonly clock: ManualClock | undefined;

  constructor(options: { resident?: boolean; clock?: ManualClock } = {}) {
    this.resident = options.resident ?? true;
    this.clock = options.clock;
  }

  get unloads(): number {
    return this.calls.filter((c) => c === "unload").length;
  }

  get reloads(): number {
    return this.calls.filter((c) => c === "reload").length;
  }

  get unloadPending(): boolean {
    return this.#pendingUnload !== undefined;
  }

  heldLeases(phase: GpuPhase): number {
    let total = 0;
    for (const n of this.#leases[phase].values()) total += n;
    return total;
  }

  async unloadAll(): Promise<UnloadReport> {
    this.#begin("unload");
    if (this.heldLeases("llm") > 0) this.#violation("unload while an LLM lease is held");
    if (this.heldLeases("diffusion") > 0) this.#violation("unload while a diffusion lease is held");
    try {
      if (this.holdUnloads) {
        await new Promise<void>((resolve, reject) => (this.#pendingUnload = { resolve, reject }));
      } else {
        await sleep(this.unloadDelayMs);
      }
      this.clock?.advance(this.unloadCostMs);
      if (this.failNextUnloads > 0) {
        this.failNextUnloads -= 1;
        throw new UnloadTimeoutError([this.model]);
      }
      const unloaded = this.resident ? [this.model] : [];
      this.resident = false;
      return { reachable: !this.ollamaDown, unloaded: this.ollamaDown ? [] : unloaded, durationMs: this.unloadCostMs, freeVramMiB: 7900 };
    } finally {
      this.#inFlight = undefined;
      this.#pendingUnload = undefined;
    }
  }

  async reload(): Promise<ReloadReport> {
    this.#begin("reload");
    if (this.heldLeases("diffusion") > 0) this.#violation("reload while a diffusion lease is held");
    try {
      await sleep(this.reloadDelayMs);
      this.clock?.advance(this.reloadCostMs);
      if (this.failNextReloads > 0) {
        this.failNextReloads -= 1;
        this.lastReloadFailed = true;
        throw new Error(`model '${this.model}' not found`);
      }
      if (this.ollamaDown) {
        this.lastReloadFailed = true;
        return { reachable: false, model: this.model, durationMs: this.reloadCostMs };
      }
      this.resident = true;
      this.lastReloadFailed = false;
      return { reachable: true, model: this.model, durationMs: this.reloadCostMs, fullyOnGpu: true };
    } finally {
      this.#inFlight = undefined;
    }
  }

  /** Completes an unload held by `holdUnloads`. */
  finishUnload(): void {
    if (!this.#pendingUnload) throw new Error("no unload is pending");
    this.#pendingUnload.resolve();
  }

  failUnload(): void {
    if (!this.#pendingUnload) throw new Error("no unload is pending");
    this.failNextUnloads += 1;
    this.#pendingUnload.resolve();
  }

  /** The harness calls this when a lease is granted (from the scheduler's "granted" event). */
  granted(phase: GpuPhase, jobId: string): void {
    if (phase === "diffusion") {
      if (this.resident) this.#violation(`diffusion lease for ${jobId} while the LLM is resident`);
      if (this.heldLeases("llm") > 0) this.#violation(`diffusion lease for ${jobId} while LLM leases are held`);
      if (this.heldLeases("diffusion") > 0) this.#violation(`second diffusion lease for ${jobId}`);
      if (this.#inFlight) this.#violation(`diffusion lease for ${jobId} during ${this.#inFlight}`);
    } else {
      if (!this.resident && !this.lastReloadFailed) this.#violation(`LLM lease for ${jobId} while the LLM is out`);
      if (this.heldLeases("diffusion") > 0) this.#violation(`LLM lease for ${jobId} while diffusion runs`);
      if (this.#inFlight === "unload") this.#violation(`LLM lease for ${jobId} during unload`);
    }
    const leases = this.#leases[phase];
    leases.set(jobId, (leases.get(jobId) ?? 0) + 1);
  }

  released(phase: GpuPhase, jobId: string): void {
    const leases = this.#leases[phase];
    const n = leases.get(jobId) ?? 0;
    if (n === 0) this.#violation(`release of a ${phase} lease ${jobId} does not hold`);
    if (n <= 1) leases.delete(jobId);
    else leases.set(jobId, n - 1);
  }

  #begin(call: "unload" | "reload"): void {
    if (this.#inFlight) this.#violation(`${call} while ${this.#inFlight} is in flight`);
    this.#inFlight = call;
    this.calls.push(call);
  }

  #violation(what: string): void {
    this.violations.push(what);
  }
}

export class UnloadTimeoutError extends Error {
  readonly code = "LLM_UNLOAD_TIMEOUT";
  constructor(readonly models: string[]) {
    super(`still resident after the unload timeout: ${models.join(", ")}`);
    this.name = "UnloadTimeoutError";
  }
}

export class ManualClock {
  constructor(public t = 1_000_000) {}
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
