import { randomUUID } from "node:crypto";
import path from "node:path";
import { outputTagFor } from "../diffusion/index.js";
import { builder } from "../../graphs/diffugen.js";
import type { DiffugenDeps } from "../../graphs/diffugen/dependencies.js";
import { createRunContext } from "../../graphs/diffugen/run-context.js";
import { EventChannel } from "./event-channel.js";
import { JobRejectedError, type GraphStreamMode, type Job, type JobInput, type RawJobInput } from "./job.js";
import { JobJournal } from "./job-journal.js";
import type { JobInfo, JobObserver } from "./job-observer.js";
import { isEndEvent, type JobRecord, type StoredEvent } from "./job-record.js";
import { JobStore, type ListOptions } from "./job-store.js";
import { pruneOutputs, removeJobFiles } from "./output-retention.js";
import { admitJob } from "./admission.js";
import { RunningJob, type RunningJobOptions } from "./running-job.js";

export type StartJobOptions = RunningJobOptions;

export interface JobRunnerOptions {
  /** Default: DATA_DIR/jobs.sqlite. */
  store?: JobStore | undefined;
}

/** The runner's own stream modes; `values` costs a state snapshot per step, so only on request. */
const ownModes: readonly GraphStreamMode[] = ["updates", "custom"];

/** Pruning runs at most this often (at start, then after jobs end). */
const PRUNE_EVERY_MS = 60_000;

/**
 * Runs the DiffuGen graph for requests: one run per job, its events as an async iterable,
 * its answer as a promise, cancellation on the client's signal. Every job is journaled in
 * the job store (GET /v1/jobs), so a client can leave and come back. One runner per
 * server: it knows every running job, so shutdown can wait for them or cancel them.
 */
export class JobRunner {
  readonly store: JobStore;
  /**
   * No checkpointer: a job's state lives in its RunningJob (and its record in the job
   * store), nothing reads a run's checkpoints, and saving one at every superstep cost
   * about 1 ms per image (npm run bench, orchestration).
   */
  readonly #graph = builder.compile();
  readonly #jobs = new Map<string, RunningJob>();
  readonly #observers = new Set<JobObserver>();
  #closed = false;
  #lastPrune = 0;

  private constructor(
    readonly deps: DiffugenDeps,
    store: JobStore,
  ) {
    this.store = store;
  }

  /**
   * Opens the job store (default DATA_DIR/jobs.sqlite) and tidies up after the last
   * process: one process owns a DATA_DIR, so a job still `running` in the store died with
   * it (its files go); old outputs are pruned.
   */
  static open(deps: DiffugenDeps, options: JobRunnerOptions = {}): JobRunner {
    const store = options.store ?? JobStore.open(path.join(deps.config.dataDir, "jobs.sqlite"));
    for (const job of store.markInterrupted()) removeJobFiles(deps.config.sd.outputDir, job.fileTag);
    // What earlier processes learned of each drawing's VRAM, and where this one keeps it.
    deps.vramNeeds.attach(store);
    const runner = new JobRunner(deps, store);
    runner.#prune();
    return runner;
  }

  /**
   * Validates a request, resolves its parameters (once: the run uses exactly these) and
   * checks it can run now; throws JobRejectedError otherwise.
   */
  prepare(raw: RawJobInput): JobInput {
    if (this.#closed) {
      throw new JobRejectedError({ code: "shutting_down", message: "The server is shutting down", node: "preflight" }, 5);
    }
    return admitJob(this.deps, raw);
  }

  /**
   * Shutdown, first step: refuses new jobs; the running ones go on (see whenIdle,
   * cancelAll). Then dispose() once they are over.
   */
  close(): void {
    this.#closed = true;
  }

  /** Shutdown, last step: closes the job store. */
  async dispose(): Promise<void> {
    this.#closed = true;
    this.store.close();
  }

  /** Adds a watcher of every job from now on (metrics, logs); returns its removal. */
  observe(observer: JobObserver): () => void {
    this.#observers.add(observer);
    return () => this.#observers.delete(observer);
  }

  start(input: JobInput, options: StartJobOptions = {}): Job {
    const info: JobInfo = { id: `job-${randomUUID()}`, mode: input.mode, requestedModel: input.request.model, startedAt: Date.now() };
    const fileTag = outputTagFor(info.id)!;
    // The upload an edit draws from is a temporary file: not part of the record.
    const { initImage: _upload, ...request } = input.request;
    this.store.create({ id: info.id, mode: input.mode, request, fileTag, createdAt: info.startedAt });
    const job = new RunningJob(info.id, new JobJournal(this.store, info.id), options);
    this.#jobs.set(job.id, job);
    this.#notify((o) => o.jobStarted?.(info));
    job.onEvent = (event) => this.#notify((o) => o.jobEvent?.(info, event));
    void job.finished.then((result) => {
      this.#jobs.delete(job.id);
      this.#notify((o) => o.jobFinished?.(info, result, Date.now() - info.startedAt));
      this.#prune();
    });
    job.run(() => this.#stream(job, input));
    return job;
  }

  get(id: string): JobRecord | undefined {
    return this.store.get(id);
  }

  list(options: ListOptions): JobRecord[] {
    return this.store.list(options);
  }

  /**
   * Cancels a job whose answer is not known yet. Returns false when there is nothing to
   * cancel (unknown, or already answered).
   */
  cancel(id: string, reason = "cancelled by request"): boolean {
    const job = this.#jobs.get(id);
    if (!job || job.answered) return false;
    job.cancel(reason);
    return true;
  }

  /** Waits until a job has its answer (resolves at once for one not running here). */
  async whenAnswered(id: string): Promise<void> {
    await this.#jobs.get(id)?.outcome;
  }

  /**
   * A job's stream from after `afterSeq`: what is stored, then live until its `end`. The
   * listener is in place before the past is read, and both come from the same synchronous
   * store, so nothing falls between them and nothing comes twice. Ends early on `signal`.
   */
  async *follow(id: string, afterSeq: number, signal?: AbortSignal): AsyncGenerator<StoredEvent> {
    const live = new EventChannel<StoredEvent>();
    const stopListening = this.#jobs.get(id)?.journal.listen((event) => live.push(event));
    const stop = () => live.close();
    signal?.addEventListener("abort", stop, { once: true });
    try {
      let last = afterSeq;
      for (const stored of this.store.eventsAfter(id, afterSeq)) {
        yield stored;
        last = stored.seq;
        if (isEndEvent(stored.event)) return;
      }
      if (!stopListening) return;
      for await (const stored of live) {
        if (stored.seq <= last) continue;
        yield stored;
        last = stored.seq;
        if (isEndEvent(stored.event)) return;
      }
    } finally {
      stopListening?.();
      signal?.removeEventListener("abort", stop);
    }
  }

  get activeJobs(): number {
    return this.#jobs.size;
  }

  /** Cancels every running job (server shutdown). */
  cancelAll(reason = "the server is shutting down"): void {
    for (const job of this.#jobs.values()) job.cancel(reason);
  }

  /** Resolves when no job is running any more. */
  async whenIdle(): Promise<void> {
    await Promise.all([...this.#jobs.values()].map((job) => job.finished));
  }

  #stream(job: RunningJob, input: JobInput) {
    return this.#graph.stream(
      {
        jobId: job.id,
        mode: input.mode,
        request: input.request,
        refinePrompt: input.refinePrompt ?? true,
        messages: input.messages ?? [],
        previousPrompt: input.previousPrompt,
      },
      {
        streamMode: [...new Set([...ownModes, ...job.rawModes])],
        signal: job.signal,
        context: createRunContext(this.deps, job.signal, { model: input.model, params: input.params, previews: input.previews }),
      },
    );
  }

  #notify(call: (observer: JobObserver) => void): void {
    for (const observer of this.#observers) {
      try {
        call(observer);
      } catch {
        // An observer's bug must never break a job.
      }
    }
  }

  /** Old outputs and job records go (OUTPUT_MAX_AGE_DAYS, OUTPUT_MAX_COUNT); never a running job's. */
  #prune(now = Date.now()): void {
    if (now - this.#lastPrune < PRUNE_EVERY_MS || this.#closed) return;
    this.#lastPrune = now;
    const limits = this.deps.config.retention;
    const running = new Set([...this.#jobs.keys()].map((id) => outputTagFor(id)!));
    try {
      pruneOutputs(this.deps.config.sd.outputDir, limits, running, now);
      this.store.prune(limits, now);
    } catch {
      // Housekeeping: a failure here must not fail a job; the next round tries again.
    }
  }
}
