import type { HolderChangeListener } from "./gpu-scheduler.js";
import type { GpuHolderState } from "./scheduler-stats.js";

/**
 * The watchdog for LLM traffic that bypasses DiffuGen's gate. While a diffusion job holds
 * the GPU no model may be in VRAM (the unload before it confirmed /api/ps empty, and every
 * LLM call through DiffuGen waits for the GPU), so a model that /api/ps lists then was
 * loaded by a client that talks to Ollama directly: sd.cpp may run out of memory, and
 * the client's own answer is slow. The scheduler cannot stop such a client; this tells
 * the user which model it was and how to route that client through DiffuGen.
 *
 * It polls /api/ps about once a second, only while diffusion holds the GPU: it starts when
 * the scheduler says a diffusion job got it (first poll 100 ms later) and stops when the
 * GPU goes elsewhere (the scheduler itself keeps no timers). Each load is reported once: a
 * model still listed at the next poll is the same load, one that leaves and comes back is
 * a new one.
 */

/** What the watchdog reads: the models Ollama lists (src/llm's OllamaProbe). */
export interface ResidentModelSource {
  listResident(signal?: AbortSignal): Promise<readonly { name: string }[]>;
}

/** Who tells the watchdog that the GPU changed hands (the GpuScheduler). */
export interface HolderChangeSource {
  onHolderChange(listener: HolderChangeListener): () => void;
}

/** One model found in VRAM while diffusion held the GPU. */
export interface GateBypass {
  model: string;
  /** Clock ms when the poll found it. */
  at: number;
  /** The diffusion job that held the GPU. */
  jobId: string;
}

export interface GateStatus {
  /** Models loaded behind the gate since the start (each load counted once). */
  bypasses: number;
  /** The same, per model (the Prometheus counter's labels). */
  byModel: Record<string, number>;
  last: GateBypass | undefined;
  /** Polling now: a diffusion job holds the GPU. */
  watching: boolean;
}

export interface BypassWatchdogOptions {
  scheduler: HolderChangeSource;
  probe: ResidentModelSource;
  /** Where a bypass is told; `message` names the model and says what to do. */
  warn: (message: string, bypass: GateBypass) => void;
  /**
   * What the user should do, appended to the warning: how to point a client at DiffuGen
   * instead of Ollama (bootstrap words it from HOST and PORT).
   */
  advice: string;
  /** Pause between two polls of /api/ps (from the end of one to the start of the next). Default 1000 ms. */
  intervalMs?: number | undefined;
  /** From the grant to the first poll. Default 100 ms. */
  firstPollMs?: number | undefined;
  /** Clock in ms. Default Date.now. */
  now?: (() => number) | undefined;
}

export const DEFAULT_BYPASS_POLL_MS = 1_000;
/**
 * Not at once: the grant is where sd.cpp is about to start, and that path is latency on
 * every image; the unload's last poll saw /api/ps empty a moment ago anyway.
 */
export const DEFAULT_FIRST_BYPASS_POLL_MS = 100;

/** One stretch of diffusion holding the GPU, watched. */
interface Watch {
  jobId: string;
  /** Names listed at the last poll that answered: a model still there is not a new load. */
  listed: Set<string>;
  timer: NodeJS.Timeout | undefined;
  /** Aborts a poll in flight when the watch ends. */
  stop: AbortController;
}

export class BypassWatchdog {
  readonly #probe: ResidentModelSource;
  readonly #warn: BypassWatchdogOptions["warn"];
  readonly #advice: string;
  readonly #intervalMs: number;
  readonly #firstPollMs: number;
  readonly #now: () => number;
  readonly #unsubscribe: () => void;

  #watch: Watch | undefined;
  #stopped = false;
  #bypasses = 0;
  readonly #byModel = new Map<string, number>();
  #last: GateBypass | undefined;

  constructor(options: BypassWatchdogOptions) {
    this.#probe = options.probe;
    this.#warn = options.warn;
    this.#advice = options.advice;
    this.#intervalMs = options.intervalMs ?? DEFAULT_BYPASS_POLL_MS;
    this.#firstPollMs = options.firstPollMs ?? DEFAULT_FIRST_BYPASS_POLL_MS;
    this.#now = options.now ?? Date.now;
    this.#unsubscribe = options.scheduler.onHolderChange((holder) => this.#holderChanged(holder));
  }

  status(): GateStatus {
    return {
      bypasses: this.#bypasses,
      byModel: Object.fromEntries(this.#byModel),
      last: this.#last && { ...this.#last },
      watching: this.#watch !== undefined,
    };
  }

  /** Stops polling for good (shutdown); status() still answers. Idempotent. */
  stop(): void {
    this.#stopped = true;
    this.#unsubscribe();
    this.#endWatch();
  }

  #holderChanged(holder: GpuHolderState): void {
    if (this.#stopped) return;
    if (holder.kind !== "diffusion") return this.#endWatch();
    // From one diffusion job straight to the next (a batch): the same stretch without an
    // LLM, so a model still listed from the last job is not reported again.
    // VRAM_POLICY=fit: a drawing beside the LLM; the models resident when it was decided are expected.
    const expected = holder.besideLlm ?? [];
    if (this.#watch) {
      this.#watch.jobId = holder.jobId;
      for (const model of expected) this.#watch.listed.add(model);
      return;
    }
    // The first poll soon: a model the unload could not see (loaded between its last poll
    // and this grant) is reported then, and once.
    const watch: Watch = { jobId: holder.jobId, listed: new Set(expected), timer: undefined, stop: new AbortController() };
    this.#watch = watch;
    this.#schedule(watch, this.#firstPollMs);
  }

  #schedule(watch: Watch, delayMs: number): void {
    watch.timer = setTimeout(() => void this.#poll(watch), delayMs);
    // A watchdog never keeps the process alive.
    watch.timer.unref();
  }

  #endWatch(): void {
    const watch = this.#watch;
    if (!watch) return;
    this.#watch = undefined;
    clearTimeout(watch.timer);
    watch.stop.abort();
  }

  async #poll(watch: Watch): Promise<void> {
    let names: string[] | undefined;
    try {
      names = (await this.#probe.listResident(watch.stop.signal)).map((m) => m.name);
    } catch {
      // Ollama down or slow: nothing to report; a stopped Ollama holds no VRAM.
    }
    // Diffusion may have ended while /api/ps answered: what it lists now is the reload.
    if (this.#watch !== watch) return;
    if (names !== undefined) {
      for (const model of names) if (!watch.listed.has(model)) this.#report(model, watch.jobId);
      watch.listed = new Set(names);
    }
    this.#schedule(watch, this.#intervalMs);
  }

  #report(model: string, jobId: string): void {
    const bypass: GateBypass = { model, at: this.#now(), jobId };
    this.#bypasses += 1;
    this.#byModel.set(model, (this.#byModel.get(model) ?? 0) + 1);
    this.#last = bypass;
    try {
      this.#warn(
        `Ollama loaded ${model} while ${jobId} was drawing: a client called Ollama directly, not through DiffuGen, ` +
          `and VRAM may run out. ${this.#advice}`,
        bypass,
      );
    } catch {
      // The count stands; a broken log must not end the watch (nor the process: polls run unawaited).
    }
  }
}
