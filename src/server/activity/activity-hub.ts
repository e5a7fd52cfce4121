import { randomBytes } from "node:crypto";
import type { SdBackendKind } from "../../diffusion/index.js";
import type { GpuSchedulerState } from "../../gpu/index.js";
import { EventChannel, type JobEvent, type JobInfo, type JobObserver, type JobRecord } from "../../jobs/index.js";
import type { GatedCall, GatedCallEnd, GatewayCallObserver } from "../gateway/gateway-observer.js";
import type { ActivityEvent, ActivitySnapshot, GatewayCallActivity, LiveJob, QueueEntry, SpanKind } from "./activity-events.js";
import { EventRing, type RingLimits } from "./event-ring.js";
import { Timeline } from "./timeline.js";

/** Where the hub's events come from; each read-only. */
export interface ActivitySources {
  scheduler: {
    state(): GpuSchedulerState;
    onStateChange(listener: (state: GpuSchedulerState) => void): () => void;
  };
  runner: {
    observe(observer: JobObserver): () => void;
    get(id: string): JobRecord | undefined;
  };
  /** Which program drew last (SdBackends.health().lastBackend): the job holding the GPU's, once sd.cpp started for it. */
  backendOf(): SdBackendKind | undefined;
  now?: (() => number) | undefined;
  /** Default: 4,000 events and 16 MB (previews are most of it). */
  ring?: RingLimits | undefined;
  /** Events a slow client may fall behind by before its stream is ended (it reconnects and resumes). Default 2,000. */
  maxBacklog?: number | undefined;
}

/** What a follower is sent: the events after the id it gave, or (first) a snapshot to start from. */
export type ActivityDelivery =
  | { kind: "event"; id: number; event: ActivityEvent }
  | { kind: "snapshot"; snapshot: ActivitySnapshot }
  /** The id it gave is not one this stream can resume from (too old, or from a restarted server). */
  | { kind: "reset"; reason: string; lastId: number };

const defaultRing: RingLimits = { maxEvents: 4_000, maxBytes: 16 * 1024 * 1024 };

/**
 * One stream of everything the operator page shows (GET /v1/events). Listens to the GPU
 * scheduler (its state after each decision: holder, LLM state, queue), the job runner (as a
 * JobObserver) and the Ollama gateway (as its GatewayCallObserver); numbers every event in
 * the order it heard them, keeps the recent ones in a ring, and hands each follower the
 * events after the id it last saw, then live. Every change is one event, sent once, in order.
 *
 * Event ids are `<stream>:<n>`: `n` counts up from 1, and `stream` is drawn when the hub
 * starts, so an id from before a restart is never mistaken for one of this run.
 */
export class ActivityHub implements GatewayCallObserver {
  readonly streamId = randomBytes(4).toString("hex");
  readonly #now: () => number;
  readonly #ring: EventRing<ActivityEvent>;
  readonly #listeners = new Set<(id: number, event: ActivityEvent) => void>();
  readonly #backendOf: () => SdBackendKind | undefined;
  readonly #runner: ActivitySources["runner"];
  readonly #maxBacklog: number;
  readonly #timeline: Timeline;
  #gpu: GpuSchedulerState;
  #llmSince: number;
  #queue: QueueEntry[] = [];
  readonly #queuedSince = new Map<string, number>();
  readonly #live = new Map<string, LiveJob>();
  readonly #jobLabels = new Map<string, { mode: string; prompt: string }>();
  readonly #calls = new Map<string, GatewayCallActivity>();
  readonly #stop: (() => void)[] = [];

  constructor(sources: ActivitySources) {
    this.#now = sources.now ?? Date.now;
    this.#ring = new EventRing(sources.ring ?? defaultRing, approximateBytes);
    this.#backendOf = sources.backendOf;
    this.#runner = sources.runner;
    this.#maxBacklog = sources.maxBacklog ?? 2_000;
    this.#timeline = new Timeline((jobId, kind) => this.#labelOf(jobId, kind));
    this.#gpu = sources.scheduler.state();
    this.#llmSince = this.#now();
    this.#stop.push(sources.scheduler.onStateChange((state) => this.#onGpuState(state)));
    this.#stop.push(sources.runner.observe(this.#jobObserver()));
  }

  /** Stops listening to the scheduler and the runner. */
  close(): void {
    for (const stop of this.#stop.splice(0)) stop();
  }

  get lastId(): number {
    return this.#ring.lastId;
  }

  /** The full id of event `n` of this stream, as the SSE `id:` line carries it. */
  eventId(n: number): string {
    return `${this.streamId}:${n}`;
  }

  snapshot(): ActivitySnapshot {
    const now = this.#now();
    return {
      lastId: this.#ring.lastId,
      at: now,
      gpu: { holder: this.#gpu.gpu, llm: this.#gpu.llm, llmSince: this.#llmSince, queue: this.#queue, batchJobs: this.#gpu.batchJobs },
      spans: this.#timeline.spans(now),
      jobs: [...this.#live.values()].map((job) => ({ ...job })),
      calls: [...this.#calls.values()].filter((call) => call.state === "admitted"),
    };
  }

  /** Hears every event from now on, with its id. Returns the unsubscribe. */
  subscribe(listener: (id: number, event: ActivityEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /**
   * The stream for one follower: after `lastEventId` (an id this stream gave out) the events
   * since, from the ring; without one, a snapshot first; with one the ring no longer holds
   * (or from another run), a `reset` and then a snapshot. Then live, until `signal` aborts,
   * or the follower falls `maxBacklog` events behind (its stream ends; it resumes by id).
   * The listener is in place before the past is read, both synchronously, so nothing falls
   * between them and nothing comes twice.
   */
  async *follow(lastEventId: string | undefined, signal?: AbortSignal): AsyncGenerator<ActivityDelivery> {
    const live = new EventChannel<{ id: number; event: ActivityEvent }>();
    let backlog = 0;
    let overflowed = false;
    const unsubscribe = this.subscribe((id, event) => {
      if (overflowed) return;
      if (++backlog > this.#maxBacklog) {
        overflowed = true;
        live.close();
        return;
      }
      live.push({ id, event });
    });
    const stop = () => live.close();
    signal?.addEventListener("abort", stop, { once: true });
    try {
      const start = this.#startFrom(lastEventId);
      let last = start.from;
      for (const delivery of start.deliveries) yield delivery;
      for await (const item of live) {
        backlog -= 1;
        if (item.id <= last) continue;
        last = item.id;
        yield { kind: "event", id: item.id, event: item.event };
      }
    } finally {
      unsubscribe();
      signal?.removeEventListener("abort", stop);
    }
  }

  // ------------------------------------------------------------ the gateway's calls

  callAdmitted(call: GatedCall): void {
    const activity: GatewayCallActivity = { ...call, state: "admitted", since: this.#now() };
    this.#calls.set(call.id, activity);
    this.#publish({ type: "gateway.call", at: activity.since, call: activity });
    // Its lease may already be held (granted at once): the span learns what it is.
    const span = this.#timeline.relabel(call.id, this.#labelOf(call.id, "llm_call"));
    if (span) this.#publish({ type: "timeline.span", at: activity.since, span });
  }

  callEnded(callId: string, end: GatedCallEnd): void {
    const admitted = this.#calls.get(callId);
    if (!admitted || admitted.state === "ended") return;
    const now = this.#now();
    const ended: GatewayCallActivity = { ...admitted, state: "ended", status: end.status, outcome: end.outcome, durationMs: now - admitted.since };
    this.#calls.set(callId, ended);
    this.#publish({ type: "gateway.call", at: now, call: ended });
    this.#forgetOldCalls();
  }

  /** Ended calls are kept a while for the labels of the spans they left, then forgotten, oldest first. */
  #forgetOldCalls(): void {
    if (this.#calls.size <= 1_000) return;
    for (const [id, call] of this.#calls) {
      if (this.#calls.size <= 500) return;
      if (call.state === "ended") this.#calls.delete(id);
    }
  }

  // ------------------------------------------------------------ the scheduler

  #onGpuState(next: GpuSchedulerState): void {
    const now = this.#now();
    const previous = this.#gpu;
    this.#gpu = next;
    // Spans first: a span that ends does so before the holder that ended it is announced.
    for (const span of this.#timeline.advance({ llm: previous.llm, holder: previous.gpu }, { llm: next.llm, holder: next.gpu }, now)) {
      this.#publish({ type: "timeline.span", at: now, span });
    }
    if (JSON.stringify(previous.gpu) !== JSON.stringify(next.gpu)) this.#publish({ type: "gpu.holder", at: now, holder: next.gpu });
    if (previous.llm !== next.llm) {
      this.#llmSince = now;
      this.#publish({ type: "gpu.llm", at: now, state: next.llm });
    }
    const queue = this.#queueOf(next, now);
    if (JSON.stringify(queue) !== JSON.stringify(this.#queue)) {
      this.#queue = queue;
      this.#publish({ type: "gpu.queue", at: now, queue });
    }
  }

  #queueOf(state: GpuSchedulerState, now: number): QueueEntry[] {
    const waiting = new Set(state.queue.map((job) => job.jobId));
    for (const id of this.#queuedSince.keys()) if (!waiting.has(id)) this.#queuedSince.delete(id);
    return state.queue.map((job, index) => {
      const since = this.#queuedSince.get(job.jobId) ?? now;
      this.#queuedSince.set(job.jobId, since);
      return { jobId: job.jobId, phase: job.phase, position: index + 1, since, label: this.#labelOf(job.jobId, job.phase === "diffusion" ? "image_job" : "llm_call") };
    });
  }

  // ------------------------------------------------------------ the jobs

  #jobObserver(): JobObserver {
    return {
      jobStarted: (info) => this.#jobStarted(info),
      jobEvent: (info, event) => this.#jobEvent(info, event),
    };
  }

  #jobStarted(info: JobInfo): void {
    const record = this.#runner.get(info.id);
    const prompt = typeof record?.request.prompt === "string" ? record.request.prompt : "";
    this.#jobLabels.set(info.id, { mode: info.mode, prompt });
    if (this.#jobLabels.size > 1_000) this.#jobLabels.delete(this.#jobLabels.keys().next().value!);
    this.#live.set(info.id, { jobId: info.id, phase: "queued", progress: 0, message: "Queued" });
    if (record) this.#publish({ type: "job.started", at: info.startedAt, job: record });
  }

  #jobEvent(info: JobInfo, event: JobEvent): void {
    const live = this.#live.get(info.id);
    // After the answer only the LLM reload is left: the GPU's events tell it, not the job's.
    if (!live) return;
    const jobId = info.id;
    if (event.type === "outcome") {
      this.#live.delete(jobId);
      const record = this.#runner.get(jobId);
      if (record) this.#publish({ type: "job.outcome", at: this.#now(), job: record });
      return;
    }
    if (event.type !== "progress") return;
    const progress = event.event;
    const at = progress.at;
    switch (progress.kind) {
      case "status": {
        const drawing = progress.phase === "loading_model" || progress.phase === "sampling" || progress.phase === "decoding";
        const holdsGpu = this.#gpu.gpu.kind === "diffusion" && this.#gpu.gpu.jobId === jobId;
        const backend = drawing && holdsGpu ? (live.backend ?? this.#backendOf()) : live.backend;
        Object.assign(live, { phase: progress.phase, progress: progress.progress, message: progress.message, step: progress.step, backend });
        const { preview: _preview, ...shown } = live;
        this.#publish({ type: "job.progress", at, job: { ...shown } });
        return;
      }
      case "refined":
        this.#publish({ type: "job.refined", at, jobId, prompt: progress.prompt, negativePrompt: progress.negativePrompt, fellBack: progress.fellBack });
        return;
      case "params":
        this.#publish({ type: "job.params", at, jobId, model: progress.model, params: progress.params });
        return;
      case "preview":
        live.preview = { pngBase64: progress.pngBase64, width: progress.width, height: progress.height };
        this.#publish({ type: "job.preview", at, jobId, pngBase64: progress.pngBase64, width: progress.width, height: progress.height, step: progress.step?.current });
        return;
      case "image":
        this.#publish({ type: "job.image", at, jobId, file: progress.path, seed: progress.seed, width: progress.width, height: progress.height, index: progress.index });
        return;
      case "warning":
        this.#publish({ type: "job.warning", at, jobId, message: progress.warning });
        return;
      default:
        // A chat's reply is the chat client's, not the page's; an error comes with the outcome.
        return;
    }
  }

  // ------------------------------------------------------------ shared

  #labelOf(jobId: string, kind: SpanKind): string {
    const call = this.#calls.get(jobId);
    if (call) return `${call.route} ${call.model}`;
    const job = this.#jobLabels.get(jobId);
    if (job) {
      if (kind === "llm_call") return job.mode === "chat" ? "chat reply" : "prompt refinement";
      return job.prompt === "" ? "image job" : job.prompt;
    }
    if (jobId.startsWith("ollama-") || jobId.startsWith("openai-")) return "LLM call";
    return kind === "image_job" ? "image job" : "LLM call";
  }

  #startFrom(lastEventId: string | undefined): { deliveries: ActivityDelivery[]; from: number } {
    const fresh = (): { deliveries: ActivityDelivery[]; from: number } => {
      const snapshot = this.snapshot();
      return { deliveries: [{ kind: "snapshot", snapshot }], from: snapshot.lastId };
    };
    if (lastEventId === undefined || lastEventId === "") return fresh();
    const [stream, n] = lastEventId.split(":");
    const seq = Number(n);
    const replay = stream === this.streamId && /^\d+$/.test(n ?? "") ? this.#ring.after(seq) : undefined;
    if (!replay) {
      const reason =
        stream !== this.streamId
          ? "that event id is from another run of DiffuGen (it restarted): start again from this snapshot"
          : "the events after that id are no longer kept: start again from this snapshot";
      const { deliveries, from } = fresh();
      return { deliveries: [{ kind: "reset", reason, lastId: from }, ...deliveries], from };
    }
    return { deliveries: replay.map(({ id, value }) => ({ kind: "event", id, event: value })), from: this.#ring.lastId };
  }

  #publish(event: ActivityEvent): void {
    const id = this.#ring.push(event);
    for (const listener of this.#listeners) {
      try {
        listener(id, event);
      } catch {
        // A follower's failure is its own.
      }
    }
  }
}

/** Roughly what an event weighs in the ring: a preview's base64 is nearly all of it. */
function approximateBytes(event: ActivityEvent): number {
  return event.type === "job.preview" ? event.pngBase64.length + 200 : 400;
}

