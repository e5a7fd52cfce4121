import type { GpuEvent, GpuEventListener, GpuLease } from "../../src/gpu/index.js";

/**
 * A GPU lease asked for by one node for the next one: `refine` asks for the diffusion phase
 * the moment it knows the run will draw, so the scheduler starts moving the LLM out while
 * LangGraph is still between `refine` and `unload` (that step used to come first, adding
 * its few ms to every image; npm run bench, orchestration). `unload` then only waits for
 * the grant and reports what the scheduler said meanwhile.
 *
 * The scheduler's events are kept until the waiting node listens, then passed on live, so
 * the stream shows them in order, from the node that reports the wait.
 */
export class EarlyLease {
  readonly #events: GpuEvent[] = [];
  #listener: GpuEventListener | undefined;
  /** Settles once the scheduler answered; never rejects (an unheard rejection must not crash the process). */
  readonly #answer: Promise<{ lease: GpuLease } | { error: unknown }>;

  /** `acquire` is the scheduler call, made at once with this lease's event sink. */
  constructor(acquire: (onEvent: GpuEventListener) => Promise<GpuLease>) {
    const onEvent: GpuEventListener = (event) => (this.#listener ? this.#listener(event) : this.#events.push(event));
    this.#answer = new Promise<GpuLease>((resolve) => resolve(acquire(onEvent))).then(
      (lease) => ({ lease }),
      (error: unknown) => ({ error }),
    );
  }

  /** Calls `then` with the lease once granted (at once if it already was); errors are the acquire's. */
  onGranted(then: (lease: GpuLease) => void): void {
    void this.#answer.then((answer) => {
      if ("lease" in answer) then(answer.lease);
    });
  }

  /**
   * Waits for the grant, telling `listener` every scheduler event so far and from now on.
   * Rejects as the scheduler's acquire did (queue full, the LLM would not leave, aborted).
   */
  async granted(listener: GpuEventListener): Promise<GpuLease> {
    for (const event of this.#events.splice(0)) listener(event);
    this.#listener = listener;
    const answer = await this.#answer;
    if ("error" in answer) throw answer.error;
    return answer.lease;
  }
}
