import { randomUUID } from "node:crypto";
import { MemorySaver } from "@langchain/langgraph";
import type { ProgressEvent } from "../events/progress-event.js";
import { builder } from "../../graphs/diffugen.js";
import type { DiffugenDeps } from "../../graphs/diffugen/dependencies.js";
import type { DiffugenStateValue } from "../../graphs/diffugen/state.js";
import { EventChannel } from "./event-channel.js";
import {
  JobRejectedError,
  type GraphStreamMode,
  type Job,
  type JobEvent,
  type JobInput,
  type JobOutcome,
  type JobResult,
  type RawJobInput,
} from "./job.js";
import type { JobInfo, JobObserver } from "./job-observer.js";
import { preflight } from "./preflight.js";

export interface StartJobOptions {
  /**
   * The client's signal (its request or stream closing). Cancels the run while its answer is
   * still being made; once the answer is known the run finishes on its own (the LLM reload).
   */
  signal?: AbortSignal | undefined;
  /** False for a caller that never reads `events` (a non-streaming request). */
  events?: boolean | undefined;
  /**
   * Also pass on the graph's own stream chunks in these modes, as `chunk` events (the raw
   * graph stream). The runner streams `updates` and `custom` anyway; `values` costs a
   * state snapshot per step, so it is only asked of LangGraph when wanted.
   */
  streamModes?: readonly GraphStreamMode[] | undefined;
}

/** What the runner itself reads from every run. */
const ownModes: readonly GraphStreamMode[] = ["updates", "custom"];

type State = Partial<DiffugenStateValue>;

/**
 * Runs the DiffuGen graph for requests: one run per job, its events as an async iterable,
 * its answer as a promise, cancellation on the client's signal. One runner per server: it
 * knows every running job, so shutdown can cancel them and wait for the GPU to come back.
 */
export class JobRunner {
  readonly #checkpointer = new MemorySaver();
  readonly #graph = builder.compile({ checkpointer: this.#checkpointer });
  readonly #jobs = new Set<RunningJob>();
  readonly #observers = new Set<JobObserver>();
  #closed = false;

  constructor(readonly deps: DiffugenDeps) {}

  /** Validates a request and checks it can run now; throws JobRejectedError otherwise. */
  prepare(raw: RawJobInput): JobInput {
    if (this.#closed) {
      throw new JobRejectedError({ code: "shutting_down", message: "The server is shutting down", node: "preflight" }, 5);
    }
    return preflight(this.deps, raw);
  }

  /**
   * Shutdown, first step: refuses new jobs; the running ones go on (see whenIdle,
   * cancelAll). Then dispose() once they are over.
   */
  close(): void {
    this.#closed = true;
  }

  /** Shutdown, last step: frees what the runner holds (the job store). */
  async dispose(): Promise<void> {
    this.#closed = true;
  }

  /** Adds a watcher of every job from now on (metrics, logs); returns its removal. */
  observe(observer: JobObserver): () => void {
    this.#observers.add(observer);
    return () => this.#observers.delete(observer);
  }

  start(input: JobInput, options: StartJobOptions = {}): Job {
    const info: JobInfo = {
      id: `job-${randomUUID()}`,
      mode: input.mode,
      requestedModel: input.request.model,
      startedAt: Date.now(),
    };
    const job = new RunningJob(info.id, options);
    this.#jobs.add(job);
    this.#notify((o) => o.jobStarted?.(info));
    job.onEvent = (event) => this.#notify((o) => o.jobEvent?.(info, event));
    void job.finished.then((result) => {
      this.#jobs.delete(job);
      this.#notify((o) => o.jobFinished?.(info, result, Date.now() - info.startedAt));
    });
    job.run(() => this.#stream(job, input), this.#checkpointer);
    return job;
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

  get activeJobs(): number {
    return this.#jobs.size;
  }

  /** Cancels every running job (server shutdown). */
  cancelAll(reason = "the server is shutting down"): void {
    for (const job of this.#jobs) job.cancel(reason);
  }

  /** Resolves when no job is running any more. */
  async whenIdle(): Promise<void> {
    await Promise.all([...this.#jobs].map((job) => job.finished));
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
        configurable: { thread_id: job.id },
        streamMode: [...new Set([...ownModes, ...job.rawModes])],
        signal: job.signal,
        context: { deps: this.deps },
      },
    );
  }
}

type GraphStream = AsyncIterable<[string, unknown]>;

class RunningJob implements Job {
  readonly events = new EventChannel<JobEvent>();
  /** Sees every event as it is pushed (the runner's observers). */
  onEvent: ((event: JobEvent) => void) | undefined;
  readonly outcome: Promise<JobOutcome>;
  readonly finished: Promise<JobResult>;
  readonly #controller = new AbortController();
  #resolveOutcome!: (outcome: JobOutcome) => void;
  #resolveFinished!: (result: JobResult) => void;
  #answered: JobOutcome | undefined;
  #state: State;
  /** The modes whose chunks go out as `chunk` events. */
  readonly rawModes: ReadonlySet<GraphStreamMode>;

  constructor(
    readonly id: string,
    options: StartJobOptions,
  ) {
    this.#state = { jobId: id };
    this.rawModes = new Set(options.streamModes ?? []);
    this.outcome = new Promise((resolve) => (this.#resolveOutcome = resolve));
    this.finished = new Promise((resolve) => (this.#resolveFinished = resolve));
    if (options.events === false) this.events.detach();
    const signal = options.signal;
    if (signal) {
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

  cancel(reason = "cancelled"): void {
    if (!this.#controller.signal.aborted) this.#controller.abort(new JobCancelled(reason));
  }

  run(stream: () => Promise<GraphStream>, checkpointer: MemorySaver): void {
    void this.#drive(stream, checkpointer);
  }

  async #drive(stream: () => Promise<GraphStream>, checkpointer: MemorySaver): Promise<void> {
    try {
      for await (const [mode, chunk] of await stream()) {
        if (this.rawModes.has(mode as GraphStreamMode)) this.#emit({ type: "chunk", mode: mode as GraphStreamMode, chunk });
        if (mode === "custom") this.#emit({ type: "progress", event: chunk as ProgressEvent });
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
      // The state lives in #state already; the checkpoint is not needed after the run.
      await checkpointer.deleteThread(this.id).catch(() => undefined);
      this.#resolveFinished({ outcome: this.#answered!, state: this.#state });
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
    this.#emit({ type: "outcome", outcome });
    this.#resolveOutcome(outcome);
  }
}

class JobCancelled extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "AbortError";
  }
}

/** The answer, if this node settled it: a failure anywhere, the reply, or the saved images. */
function outcomeAfterNode(node: string, state: State): JobOutcome | undefined {
  const warnings = state.warnings ?? [];
  if (state.error) return { kind: "failed", error: state.error, warnings };
  if (node === "reply") return { kind: "reply", text: state.replyText ?? "", warnings };
  if (node === "diffuse") return imagesOutcome(state);
  return undefined;
}

function outcomeOfFinalState(state: State): JobOutcome {
  const warnings = state.warnings ?? [];
  if (state.error) return { kind: "failed", error: state.error, warnings };
  if (state.intent === "reply") return { kind: "reply", text: state.replyText ?? "", warnings };
  return (
    imagesOutcome(state) ?? {
      kind: "failed",
      error: { code: "internal", message: "The run ended without an image", node: "runner" },
      warnings,
    }
  );
}

function imagesOutcome(state: State): JobOutcome | undefined {
  const { images, model, params } = state;
  if (!images || images.length === 0 || !model || !params) return undefined;
  return { kind: "images", images, model, params, refined: state.refined, warnings: state.warnings ?? [] };
}
