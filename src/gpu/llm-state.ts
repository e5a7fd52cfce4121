import { GpuInvariantError } from "./errors.js";

/**
 * Where the LLM is, as far as the scheduler knows (llama-swap style: every transition is
 * one method that checks the state it starts from, so the scheduler can never be "half
 * unloaded" without knowing it).
 *
 *   unknown   nothing done yet (startup): it may or may not be in VRAM
 *   resident  loaded again by us (reload confirmed)
 *   unloading unloadAll() in flight
 *   unloaded  confirmed out of VRAM: diffusion may run
 *   loading   reload() in flight
 *   failed    the last unload or reload failed: it may be partly in VRAM
 *
 *   unknown | resident | failed --beginUnload--> unloading --unloaded--> unloaded
 *                                                          --unloadFailed--> failed
 *   unloaded | failed --beginLoad--> loading --loaded--> resident
 *                                            --loadFailed--> failed
 */
export type LlmState = "unknown" | "resident" | "unloading" | "unloaded" | "loading" | "failed";

export interface LlmStateSnapshot {
  state: LlmState;
  /** When the current state began (clock ms). */
  since: number;
  /** Why the last unload or reload failed, while the state is `failed`. */
  error?: { during: "unload" | "reload"; message: string } | undefined;
}

export class LlmResidencyState {
  #state: LlmState = "unknown";
  #since: number;
  #error: LlmStateSnapshot["error"];

  constructor(private readonly now: () => number) {
    this.#since = now();
  }

  get state(): LlmState {
    return this.#state;
  }

  /** An unload or reload is in flight: nothing else may happen to the GPU until it settles. */
  get busy(): boolean {
    return this.#state === "unloading" || this.#state === "loading";
  }

  /** Diffusion may start only from here. */
  get confirmedOut(): boolean {
    return this.#state === "unloaded";
  }

  /** An LLM lease needs a reload first: we took the LLM out, or the last attempt failed. */
  get needsReload(): boolean {
    return this.#state === "unloaded" || this.#state === "failed";
  }

  snapshot(): LlmStateSnapshot {
    return { state: this.#state, since: this.#since, error: this.#error };
  }

  beginUnload(): void {
    this.#move(["unknown", "resident", "failed"], "unloading");
  }

  unloaded(): void {
    this.#move(["unloading"], "unloaded");
  }

  unloadFailed(message: string): void {
    this.#move(["unloading"], "failed", { during: "unload", message });
  }

  beginLoad(): void {
    this.#move(["unloaded", "failed"], "loading");
  }

  loaded(): void {
    this.#move(["loading"], "resident");
  }

  loadFailed(message: string): void {
    this.#move(["loading"], "failed", { during: "reload", message });
  }

  #move(from: readonly LlmState[], to: LlmState, error?: LlmStateSnapshot["error"]): void {
    if (!from.includes(this.#state)) {
      throw new GpuInvariantError(`LLM cannot go ${this.#state} -> ${to} (only from ${from.join(" | ")})`);
    }
    this.#state = to;
    this.#since = this.now();
    this.#error = error;
  }
}
