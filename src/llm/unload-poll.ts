/**
 * When to look at /api/ps again while waiting for Ollama to drop an unloaded model.
 *
 * Ollama's unload call only marks the runner expired; its scheduler then stops the runner
 * and deletes it from the list /api/ps reads the moment it has (server/sched.go,
 * processCompleted: unload(), then delete(s.loaded, ...), then the wait for VRAM). That
 * usually takes a few hundred ms, and every ms between the drop and the poll that sees it
 * is GPU time nobody uses: sd.cpp may only start once the drop is seen. So while the drop
 * is expected (the first `fastForMs` after the unload call) polls come every `fastMs`; an
 * unload that takes longer than that is a slow one (a busy driver, a stuck runner), and the
 * pause then backs off from `initialMs`, doubling to `maxMs`, so a long wait does not
 * hammer Ollama.
 */

export interface UnloadPollOptions {
  /** Pause between polls while the drop is expected. */
  fastMs: number;
  /** For how long after the unload call the drop is expected; 0: never (back off at once). */
  fastForMs: number;
  /** First pause after that, doubling... */
  initialMs: number;
  /** ...up to this. */
  maxMs: number;
}

export const defaultUnloadPoll: UnloadPollOptions = {
  // A poll is a few hundred bytes of JSON (well under a ms of our CPU); at 3 ms
  // a 200 ms unload costs ~60 of them and is seen ~2 ms after the drop on average (~55 ms
  // with the 50→100 ms back-off alone; npm run bench, orchestration).
  fastMs: 3,
  // Ollama stops a runner in a few hundred ms; an unload still going after half a second
  // is a slow one, where being 50-100 ms late matters less than ~300 polls a second would.
  fastForMs: 500,
  initialMs: 50,
  // Capped low: every pause is GPU time lost after the drop (npm run bench: 250 ms cost
  // ~155 ms per swap at a 200 ms linger).
  maxMs: 100,
};

export class UnloadPollSchedule {
  readonly #options: UnloadPollOptions;
  readonly #now: () => number;
  readonly #since: number;
  #backoff: number;

  /** Starts the clock: call it when the unload is asked for. */
  constructor(options: UnloadPollOptions, now: () => number = Date.now) {
    this.#options = options;
    this.#now = now;
    this.#since = now();
    this.#backoff = Math.max(0, options.initialMs);
  }

  /** The pause before the next poll. */
  nextPauseMs(): number {
    const { fastMs, fastForMs, maxMs } = this.#options;
    if (this.#now() - this.#since < fastForMs) return Math.max(0, fastMs);
    const pause = this.#backoff;
    this.#backoff = Math.min(Math.max(pause * 2, 1), Math.max(maxMs, pause));
    return pause;
  }
}
