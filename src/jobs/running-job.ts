import type { ProgressEvent } from "../events/progress-event.js";
import type { DiffugenStateValue, GeneratedImage } from "../../graphs/diffugen/state.js";
import { EventChannel } from "./event-channel.js";
import type { GraphStreamMode, Job, JobEvent, JobOutcome, JobResult } from "./job.js";
import type { JobJournal } from "./job-journal.js";
import { outcomeAfterImages, outcomeAfterNode, outcomeOfFinalState } from "./outcomes.js";

export interface RunningJobOptions {
  /**
   * The client's signal (its request or stream closing). Cancels the run while its answer is
   * still being made, when `cancelOnAbort`; once the answer is known the run finishes on
   * its own (the LLM reload).
   */
  signal?: AbortSignal | undefined;
  /** False: the client going away leaves the job running (CANCEL_ON_DISCONNECT). */
  cancelOnAbort?: boolean | undefined;
  /** False for a caller that never reads `events` (a non-streaming request). */
  events?: boolean | undefined;
  streamModes?: readonly GraphStreamMode[] | undefined;
}

type State = Partial<DiffugenStateValue>;
type GraphStream = AsyncIterable<[string, unknown]>;

/**
 * One graph run: drives LangGraph's stream, keeps the state as it grows, journals every
 * progress event, and settles the answer as soon as it is known: the last image announced,
 * or the node that decided it.
 */
export class RunningJob implements Job {
  readonly events = new EventChannel<JobEvent>();
  readonly outcome: Promise<JobOutcome>;
  readonly finished: Promise<JobResult>;
  /** Sees every event as it is pushed (the runner's observers). */
  onEvent: ((event: JobEvent) => void) | undefined;
  /** The modes whose chunks go out as `chunk` events. */
  readonly rawModes: ReadonlySet<GraphStreamMode>;
  readonly #controller = new AbortController();
  #resolveOutcome!: (outcome: JobOutcome) => void;
  #resolveFinished!: (result: JobResult) => void;
  #answered: JobOutcome | undefined;
  #state: State;
  /** The images `diffuse` announced so far (its `image` events). */
  readonly #images: GeneratedImage[] = [];

  constructor(
    readonly id: string,
    readonly journal: JobJournal,
    options: RunningJobOptions,
  ) {
    this.#state = { jobId: id };
    this.rawModes = new Set(options.streamModes ?? []);
    this.outcome = new Promise((resolve) => (this.#resolveOutcome = resolve));
    this.finished = new Promise((resolve) => (this.#resolveFinished = resolve));
    if (options.events === false) this.events.detach();
    const signal = options.signal;
    if (signal && options.cancelOnAbort !== false) {
      const onAbort = () => {
        if (!this.#answered) this.cancel("the client went away");
      };
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener("abort", onAbort, { once: true });
        void this.finished.finally(() => signal.removeEventListener("abort", onAbort));
      }
    }
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Whether the answer is known yet. */
  get answered(): boolean {
    return this.#answered !== undefined;
  }

  cancel(reason = "cancelled"): void {
    if (!this.#controller.signal.aborted) this.#controller.abort(new JobCancelled(reason));
  }

  run(stream: () => Promise<GraphStream>): void {
    void this.#drive(stream);
  }

  async #drive(stream: () => Promise<GraphStream>): Promise<void> {
    try {
      for await (const [mode, chunk] of await stream()) {
        if (this.rawModes.has(mode as GraphStreamMode)) this.#emit({ type: "chunk", mode: mode as GraphStreamMode, chunk });
        if (mode === "custom") this.#onProgress(chunk as ProgressEvent);
        else if (mode === "updates") this.#onUpdates(chunk as Record<string, unknown>);
      }
      this.#answer(outcomeOfFinalState(this.#state));
    } catch (err) {
      const reason = this.#controller.signal.reason;
      if (this.#controller.signal.aborted) {
        this.#answer({ kind: "cancelled", reason: reason instanceof JobCancelled ? reason.message : "cancelled" });
      } else {
        const message = err instanceof Error ? err.message : String(err);
        this.#answer({
          kind: "failed",
          error: { code: "internal", message: `The run failed: ${message}`, node: "runner" },
          warnings: this.#state.warnings ?? [],
        });
      }
    } finally {
      this.events.close();
      this.#resolveFinished({ outcome: this.#answered!, state: this.#state });
    }
  }

  #onProgress(event: ProgressEvent): void {
    // After the answer, only the LLM reload is left: housekeeping, not part of the job's
    // record. A reply's pieces are for live streams: the record keeps the whole text (the
    // `reply` event and the result), not a row per word.
    const seq = this.#answered || event.kind === "reply_delta" ? this.journal.lastSeq : this.journal.record(event);
    this.#emit({ type: "progress", event, seq });
    if (event.kind === "image" && !this.#answered) {
      const { path, seed, width, height, index } = event;
      this.#images.push({ path, seed, width, height, index });
      const outcome = outcomeAfterImages(this.#state, this.#images);
      if (outcome) this.#answer(outcome);
    }
  }

  #onUpdates(chunk: Record<string, unknown>): void {
    for (const [node, value] of Object.entries(chunk)) {
      if (node.startsWith("__") || value === null || typeof value !== "object") continue;
      const update = value as State;
      this.#state = { ...this.#state, ...update };
      this.#emit({ type: "node", node, update, state: this.#state });
      const outcome = outcomeAfterNode(node, this.#state);
      if (outcome) this.#answer(outcome);
    }
  }

  #emit(event: JobEvent): void {
    this.events.push(event);
    this.onEvent?.(event);
  }

  #answer(outcome: JobOutcome): void {
    if (this.#answered) return;
    this.#answered = outcome;
    const seq = this.journal.end(outcome);
    this.#emit({ type: "outcome", outcome, seq });
    this.#resolveOutcome(outcome);
  }
}

class JobCancelled extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "AbortError";
  }
}
