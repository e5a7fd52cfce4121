import path from "node:path";
import type { ProgressEvent } from "../events/progress-event.js";
import type { JobOutcome } from "./job.js";
import type { JobStatus, StoredEvent, StoredResult } from "./job-record.js";
import type { JobEnding, JobStore } from "./job-store.js";

export type StoredEventListener = (event: StoredEvent) => void;

/**
 * One running job's side of the store: numbers its events, writes each one before telling
 * the live followers, and writes the answer with the `end` event that closes its stream.
 * A store that fails (disk full) costs the record, never the job itself.
 */
export class JobJournal {
  #seq = 0;
  #ended = false;
  readonly #listeners = new Set<StoredEventListener>();

  constructor(
    private readonly store: JobStore,
    readonly jobId: string,
  ) {}

  /** Stores a progress event; returns its seq. */
  record(event: ProgressEvent): number {
    const seq = ++this.#seq;
    this.#safely(() => this.store.appendEvent(this.jobId, seq, event));
    this.#tell({ seq, event });
    return seq;
  }

  /** Stores the answer and the `end` event; returns the end's seq. Once only. */
  end(outcome: JobOutcome, at = Date.now()): number {
    if (this.#ended) return this.#seq;
    this.#ended = true;
    const seq = ++this.#seq;
    const ending = endingOf(outcome, at);
    this.#safely(() => this.store.finish(this.jobId, seq, ending));
    this.#tell({ seq, event: { kind: "end", status: ending.status, at } });
    this.#listeners.clear();
    return seq;
  }

  /** Hears every event stored from now on, until the end. Returns the unsubscribe. */
  listen(listener: StoredEventListener): () => void {
    if (this.#ended) return () => undefined;
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The seq of the last event stored (0 before the first). */
  get lastSeq(): number {
    return this.#seq;
  }

  get ended(): boolean {
    return this.#ended;
  }

  #tell(event: StoredEvent): void {
    for (const listener of this.#listeners) listener(event);
  }

  #safely(write: () => void): void {
    try {
      write();
    } catch {
      // The job goes on; its record may be incomplete (disk full, store closed at exit).
    }
  }
}

const statusOf: Record<JobOutcome["kind"], Exclude<JobStatus, "running">> = {
  images: "succeeded",
  reply: "succeeded",
  failed: "failed",
  cancelled: "cancelled",
};

function endingOf(outcome: JobOutcome, at: number): JobEnding {
  const status = statusOf[outcome.kind];
  switch (outcome.kind) {
    case "images":
      return { status, at, warnings: outcome.warnings, result: storedImages(outcome) };
    case "reply":
      return { status, at, warnings: outcome.warnings, result: { kind: "reply", text: outcome.text } };
    case "failed":
      return { status, at, warnings: outcome.warnings, error: { code: outcome.error.code, message: outcome.error.message } };
    case "cancelled":
      return { status, at, warnings: [], error: { code: "cancelled", message: `Cancelled: ${outcome.reason}` } };
  }
}

function storedImages(outcome: Extract<JobOutcome, { kind: "images" }>): StoredResult {
  // The init image is a server-side upload path and the prompts are kept apart: not part of the params shown.
  const { initImage: _init, prompt: _prompt, negativePrompt: _negative, ...params } = outcome.params;
  return {
    kind: "images",
    model: outcome.model,
    prompt: outcome.prompt,
    negativePrompt: outcome.negativePrompt,
    images: outcome.images.map((image) => ({
      file: path.basename(image.path),
      seed: image.seed,
      width: image.width,
      height: image.height,
      index: image.index,
    })),
    params,
  };
}
