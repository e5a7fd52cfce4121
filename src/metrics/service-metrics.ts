import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { SdBackendStats } from "../diffusion/index.js";
import type { GateStatus, GpuHolderState, GpuSchedulerStats, LlmState } from "../gpu/index.js";
import { DiffusionMetrics } from "./diffusion-metrics.js";
import { VramMetrics, type VramSource } from "./vram-metrics.js";
import type { JobEvent, JobInput, JobOutcome, JobResult } from "../jobs/job.js";
import type { JobInfo, JobObserver } from "../jobs/job-observer.js";
import { CountFollower, DurationFollower } from "./duration-follower.js";
import { GatewayMetrics } from "./gateway-metrics.js";
import type { ServiceStats } from "./service-stats.js";
import { MeanByModel, StepTimings } from "./step-timings.js";

/** Where the GPU figures come from: the scheduler (read, never driven). */
export interface GpuStatsSource {
  stats(): GpuSchedulerStats;
}

/** Where the diffusion figures come from: the backends (read, never driven). */
export interface DiffusionStatsSource {
  stats(): SdBackendStats;
}

/** Where the gate figures come from: the bypass watchdog (read, never driven). */
export interface GateStatsSource {
  status(): Pick<GateStatus, "byModel">;
}

export interface ServiceMetricsOptions {
  scheduler: GpuStatsSource;
  /** The bypass watchdog bootstrap started, when there is one. */
  gate?: GateStatsSource | undefined;
  /** sd-cli / sd-server: model loads, sd-server starts and stops, time to the first step. */
  diffusion?: DiffusionStatsSource | undefined;
  /** VRAM_POLICY=fit's ledger, when one runs. */
  vram?: VramSource | undefined;
  /** prom-client's process metrics (CPU, memory, event loop, GC) on this registry. Default true. */
  processMetrics?: boolean | undefined;
  /** Clock in ms (uptime). Default Date.now. */
  now?: (() => number) | undefined;
}

/** One finished HTTP request, as the request middleware measured it. */
export interface RequestSample {
  method: string;
  /** The route pattern that matched (`/v1/images/generations`, `/images/:name`), never the raw path. */
  route: string;
  status: number;
  durationSeconds: number;
}

const outcomeKinds = { images: 0, reply: 0, failed: 0, cancelled: 0 } satisfies Record<JobOutcome["kind"], 0>;
const jobModes = { image: 0, chat: 0 } satisfies Record<JobInput["mode"], 0>;
const holderKinds = { idle: 0, llm: 0, diffusion: 0 } satisfies Record<GpuHolderState["kind"], 0>;
const llmStates = { unknown: 0, resident: 0, unloading: 0, unloaded: 0, loading: 0, failed: 0 } satisfies Record<LlmState, 0>;
const keysOf = <T extends object>(o: T) => Object.keys(o) as (keyof T & string)[];

/**
 * The service's figures, kept once and shown two ways: GET /metrics (Prometheus text, on a
 * registry of its own, never prom-client's global one, so two apps in one process do not
 * collide) and GET /stats (JSON for `diffugen status`).
 *
 * Fed by: the request middleware (requestFinished), the job runner (it is a JobObserver),
 * and the GPU scheduler's stats(), read after each job step and at each scrape.
 */
export class ServiceMetrics implements JobObserver {
  readonly registry = new Registry();
  /** The Ollama gateway's figures, on the same registry (src/server/routes/ollama-gateway.ts). */
  readonly gateway = new GatewayMetrics(this.registry);

  readonly #scheduler: GpuStatsSource;
  readonly #gate: GateStatsSource | undefined;
  readonly #diffusion: DiffusionMetrics | undefined;
  readonly #vram: VramMetrics;
  readonly #now: () => number;
  readonly #startedAt: number;

  readonly #httpRequests: Counter<"method" | "route" | "status">;
  readonly #httpDuration: Histogram<"method" | "route" | "status">;
  readonly #jobsStarted: Counter<"mode">;
  readonly #jobsFinished: Counter<"mode" | "outcome">;
  readonly #jobsRunning: Gauge;
  readonly #jobDuration: Histogram<"mode" | "outcome">;
  readonly #images: Counter;
  readonly #swaps: Counter;
  readonly #unloadSeconds: Histogram;
  readonly #reloadSeconds: Histogram;
  readonly #unloadFailures: Counter;
  readonly #reloadFailures: Counter;
  readonly #stepSeconds: Histogram<"model">;
  readonly #queueLength: Gauge;
  readonly #gpuHolder: Gauge<"holder">;
  readonly #llmState: Gauge<"state">;
  readonly #gateBypasses: Counter<"model">;
  /** Bypasses per model already added to the counter. */
  readonly #gateBypassesCounted = new Map<string, number>();

  // What /stats shows (prom-client's own values are only readable asynchronously).
  readonly #requests = { total: 0, by_status: { "2xx": 0, "4xx": 0, "5xx": 0 } };
  readonly #jobs = { started: 0, over: 0, by_outcome: { ...outcomeKinds } };
  #imagesDelivered = 0;
  readonly #stepTimings = new StepTimings();
  readonly #stepMeans = new MeanByModel();

  readonly #unloads = new DurationFollower();
  readonly #reloads = new DurationFollower();
  readonly #unloadFailureCount = new CountFollower();
  readonly #reloadFailureCount = new CountFollower();

  constructor(options: ServiceMetricsOptions) {
    this.#scheduler = options.scheduler;
    this.#gate = options.gate;
    this.#diffusion = options.diffusion && new DiffusionMetrics(options.diffusion, this.registry);
    this.#vram = new VramMetrics(options.vram, this.registry);
    this.#now = options.now ?? Date.now;
    this.#startedAt = this.#now();
    const registers = [this.registry];
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });

    this.#httpRequests = new Counter({
      name: "diffugen_http_requests_total",
      help: "HTTP requests to DiffuGen's paths, by method, route pattern and status",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.#httpDuration = new Histogram({
      name: "diffugen_http_request_duration_seconds",
      help: "Time until the response began (a stream goes on after its headers)",
      labelNames: ["method", "route", "status"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers,
    });
    this.#jobsStarted = new Counter({
      name: "diffugen_jobs_started_total",
      help: "Graph runs started, by mode (image, chat)",
      labelNames: ["mode"],
      registers,
    });
    this.#jobsFinished = new Counter({
      name: "diffugen_jobs_finished_total",
      help: "Graph runs by outcome (images, reply, failed, cancelled), counted when the answer is known",
      labelNames: ["mode", "outcome"],
      registers,
    });
    this.#jobsRunning = new Gauge({
      name: "diffugen_jobs_running",
      help: "Graph runs started and not over yet (LLM reload included)",
      registers,
    });
    this.#jobDuration = new Histogram({
      name: "diffugen_job_duration_seconds",
      help: "Whole graph runs, from start to the LLM back in VRAM, by mode and outcome",
      labelNames: ["mode", "outcome"],
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200],
      registers,
    });
    this.#images = new Counter({ name: "diffugen_images_total", help: "Images delivered", registers });
    this.#swaps = new Counter({
      name: "diffugen_gpu_swaps_total",
      help: "Confirmed LLM unloads to let diffusion run (each is one swap: LLM out, then back)",
      registers,
    });
    const swapBuckets = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120];
    this.#unloadSeconds = new Histogram({
      name: "diffugen_llm_unload_duration_seconds",
      help: "Time from asking Ollama to unload the LLM to its confirmed absence from VRAM",
      buckets: swapBuckets,
      registers,
    });
    this.#reloadSeconds = new Histogram({
      name: "diffugen_llm_reload_duration_seconds",
      help: "Time to load the LLM back into VRAM after diffusion",
      buckets: swapBuckets,
      registers,
    });
    this.#unloadFailures = new Counter({
      name: "diffugen_llm_unload_failures_total",
      help: "LLM unloads that failed (a model would not leave VRAM, or Ollama answered an error)",
      registers,
    });
    this.#reloadFailures = new Counter({
      name: "diffugen_llm_reload_failures_total",
      help: "LLM reloads that failed or found Ollama unreachable",
      registers,
    });
    this.#stepSeconds = new Histogram({
      name: "diffugen_sampling_step_seconds",
      help: "Seconds per sampling step as sd.cpp measured it, by registry model (runs that delivered images)",
      labelNames: ["model"],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64],
      registers,
    });
    this.#queueLength = new Gauge({ name: "diffugen_gpu_queue_length", help: "Jobs waiting for the GPU", registers });
    this.#gpuHolder = new Gauge({
      name: "diffugen_gpu_holder",
      help: "Who holds the GPU: 1 for the current holder (idle, llm, diffusion), 0 for the others",
      labelNames: ["holder"],
      registers,
    });
    this.#llmState = new Gauge({
      name: "diffugen_llm_state",
      help: "Where the LLM is as the scheduler knows it: 1 for the current state, 0 for the others",
      labelNames: ["state"],
      registers,
    });
    this.#gateBypasses = new Counter({
      name: "diffugen_gate_bypass_total",
      help: "Models Ollama loaded while diffusion held the GPU: a client that calls Ollama directly, not through DiffuGen",
      labelNames: ["model"],
      registers,
    });

    // Every series that has a known label set exists from the start, at 0: a rate() over
    // a series that appears only with its first increment misses that increment.
    for (const mode of keysOf(jobModes)) {
      this.#jobsStarted.labels(mode).inc(0);
      for (const outcome of keysOf(outcomeKinds)) this.#jobsFinished.labels(mode, outcome).inc(0);
    }
    this.#refreshGpu();
  }

  // ------------------------------------------------------------------ HTTP

  requestFinished(sample: RequestSample): void {
    const labels = { method: sample.method, route: sample.route, status: String(sample.status) };
    this.#httpRequests.inc(labels);
    this.#httpDuration.observe(labels, sample.durationSeconds);
    this.#requests.total += 1;
    const statusClass = `${Math.floor(sample.status / 100)}xx`;
    if (statusClass === "2xx" || statusClass === "4xx" || statusClass === "5xx") this.#requests.by_status[statusClass] += 1;
  }

  // ------------------------------------------------------------------ jobs (JobObserver)

  jobStarted(job: JobInfo): void {
    this.#jobs.started += 1;
    this.#jobsStarted.labels(job.mode).inc();
    this.#jobsRunning.inc();
  }

  jobEvent(job: JobInfo, event: JobEvent): void {
    this.#stepTimings.record(job.id, event);
    if (event.type === "outcome") this.#answered(job, event.outcome);
    // Unloads and reloads end inside nodes: reading the scheduler here sees each one alone.
    if (event.type === "node" || event.type === "outcome") this.#refreshGpu();
  }

  jobFinished(job: JobInfo, result: JobResult, durationMs: number): void {
    this.#jobs.over += 1;
    this.#jobsRunning.dec();
    this.#jobDuration.labels(job.mode, result.outcome.kind).observe(durationMs / 1000);
    this.#stepTimings.forget(job.id);
    this.#refreshGpu();
  }

  #answered(job: JobInfo, outcome: JobOutcome): void {
    this.#jobs.by_outcome[outcome.kind] += 1;
    this.#jobsFinished.labels(job.mode, outcome.kind).inc();
    if (outcome.kind !== "images") {
      this.#stepTimings.forget(job.id);
      return;
    }
    this.#imagesDelivered += outcome.images.length;
    this.#images.inc(outcome.images.length);
    for (const seconds of this.#stepTimings.take(job.id)) {
      this.#stepSeconds.labels(outcome.model).observe(seconds);
      this.#stepMeans.add(outcome.model, seconds);
    }
  }

  // ------------------------------------------------------------------ GPU

  /** Brings the GPU figures up to date with the scheduler; returns what it read. */
  #refreshGpu(): GpuSchedulerStats {
    const stats = this.#scheduler.stats();
    for (const ms of this.#unloads.newSamples(stats.unloads)) {
      this.#swaps.inc();
      this.#unloadSeconds.observe(ms / 1000);
    }
    for (const ms of this.#reloads.newSamples(stats.reloads)) this.#reloadSeconds.observe(ms / 1000);
    this.#unloadFailures.inc(this.#unloadFailureCount.increase(stats.failures.unloads));
    this.#reloadFailures.inc(this.#reloadFailureCount.increase(stats.failures.reloads));
    this.#queueLength.set(stats.queue.length);
    for (const holder of keysOf(holderKinds)) this.#gpuHolder.labels(holder).set(holder === stats.gpu.kind ? 1 : 0);
    for (const state of keysOf(llmStates)) this.#llmState.labels(state).set(state === stats.llm.state ? 1 : 0);
    this.#refreshGate();
    this.#diffusion?.refresh();
    this.#vram.refresh(stats);
    return stats;
  }

  /** Adds the bypasses the watchdog has seen since the last refresh. */
  #refreshGate(): void {
    if (!this.#gate) return;
    for (const [model, total] of Object.entries(this.#gate.status().byModel)) {
      const counted = this.#gateBypassesCounted.get(model) ?? 0;
      if (total <= counted) continue;
      this.#gateBypasses.labels(model).inc(total - counted);
      this.#gateBypassesCounted.set(model, total);
    }
  }

  // ------------------------------------------------------------------ views

  /** The Prometheus text exposition (Content-Type: `contentType`). */
  async render(): Promise<string> {
    this.#refreshGpu();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** GET /stats. */
  snapshot(): ServiceStats {
    const gpu = this.#refreshGpu();
    const jobs = this.#jobs;
    return {
      uptime_seconds: Math.round((this.#now() - this.#startedAt) / 1000),
      requests: { total: this.#requests.total, by_status: { ...this.#requests.by_status } },
      jobs: { started: jobs.started, running: jobs.started - jobs.over, by_outcome: { ...jobs.by_outcome } },
      images: this.#imagesDelivered,
      failures: jobs.by_outcome.failed,
      gpu: {
        holder: gpu.gpu.kind,
        llm: gpu.llm.state,
        swaps: gpu.unloads.count,
        unload: { count: gpu.unloads.count, mean_ms: Math.round(gpu.unloads.meanMs) },
        reload: { count: gpu.reloads.count, mean_ms: Math.round(gpu.reloads.meanMs) },
        unload_failures: gpu.failures.unloads,
        reload_failures: gpu.failures.reloads,
      },
      queue: {
        length: gpu.queue.length,
        jobs: gpu.queue.map((q) => ({ job_id: q.jobId, phase: q.phase, position: q.position, waiting_ms: q.waitingMs })),
      },
      seconds_per_step: this.#stepMeans.snapshot(),
      ...(this.#diffusion ? { diffusion: this.#diffusion.snapshot() } : {}),
      vram: this.#vram.snapshot(gpu),
    };
  }
}
