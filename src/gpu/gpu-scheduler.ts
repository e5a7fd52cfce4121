import {
  AcquireAbortedError,
  errorMessage,
  GpuInvariantError,
  LeaseConflictError,
  LlmUnloadFailedError,
  QueueFullError,
  SchedulerClosedError,
} from "./errors.js";
import type { DiffusionResidency } from "./diffusion-residency.js";
import type { FitAdvisor, FitDecision, VramNeed } from "./fit-advisor.js";
import type { GpuEvent, GpuEventListener, GpuPhase } from "./gpu-events.js";
import { GrantedLease, type GpuLease, type ReleaseOutcome } from "./gpu-lease.js";
import type { LlmResidency, ReloadReport, UnloadReport } from "./llm-residency.js";
import { LlmResidencyState } from "./llm-state.js";
import {
  estimateWaitMs,
  SchedulerCounters,
  type GpuHolderState,
  type GpuSchedulerState,
  type GpuSchedulerStats,
} from "./scheduler-stats.js";

/**
 * The GPU scheduler: the one long-lived owner of the VRAM invariant (DESIGN.md). The GPU
 * holds either the LLM or the diffusion model, never both:
 *
 * - `diffusion` leases are exclusive and granted only once the LLM is confirmed out of
 *   VRAM (`llm.unloadAll()` resolved); `llm` leases are shared and never granted while a
 *   diffusion lease is held.
 * - When diffusion work runs out (or the batch must yield), the LLM is reloaded once.
 *
 * Fairness, in four rules (each bounds someone's wait):
 *
 * 1. With the GPU idle and the LLM in place, the job that has waited longest decides which
 *    phase goes next.
 * 2. Batching: inside a diffusion batch (LLM out), the next waiting diffusion job gets the
 *    GPU straight away, ahead of LLM jobs that arrived earlier, until the batch has run
 *    `maxBatch` jobs while LLM work waits. Then the LLM is reloaded and the LLM work goes.
 *    Without LLM work waiting a batch runs as long as diffusion jobs keep coming.
 * 3. When the GPU switches to the LLM phase (or a reload finishes), every LLM job waiting at
 *    that moment is granted: they share the LLM.
 * 4. While LLM leases are held, a new LLM job joins them at once only if no diffusion job
 *    is waiting; otherwise it queues behind it, the held leases drain, and diffusion goes.
 *
 * So an LLM job waits for at most the running diffusion job plus `maxBatch` more, and a
 * diffusion job for at most one LLM phase (the leases held plus those waiting when it began).
 *
 * Nothing here uses timers or polls: every decision is taken in `#decide()`, which runs
 * after each acquire, release, abort, and unload/reload completion. Whoever must act on
 * who holds the GPU (the bypass watchdog polls Ollama while diffusion runs) hears of each
 * change through `onHolderChange()` and keeps its own timers.
 */

export interface GpuSchedulerOptions {
  llm: LlmResidency;
  /**
   * What may still hold the image model when a burst ends (an sd-server kept for it): it
   * is released, and its exit confirmed, before the LLM reload is asked for.
   */
  diffusion?: DiffusionResidency | undefined;
  /**
   * VRAM_POLICY=fit: asked whether a diffusion job fits beside the resident LLM. When it
   * does, the job runs without the LLM leaving, and LLM calls for the models resident then
   * keep being granted while it runs. Absent: every diffusion job swaps (VRAM_POLICY=swap).
   */
  fit?: FitAdvisor | undefined;
  /** Jobs that may wait; one more is refused with QueueFullError. Default 16. */
  maxQueue?: number | undefined;
  /** Diffusion jobs a batch may run while LLM work waits. Default 8. */
  maxBatch?: number | undefined;
  log?: ((message: string, fields: Record<string, unknown>) => void) | undefined;
  /** Clock in ms (tests inject one). Default Date.now. */
  now?: (() => number) | undefined;
}

export interface AcquireOptions {
  jobId: string;
  /** Aborting while waiting leaves the queue at once; it does not release a granted lease. */
  signal?: AbortSignal | undefined;
  /** Queue position and swap events for this job (delivered asynchronously, in order). */
  onEvent?: GpuEventListener | undefined;
  /** Diffusion: what the job will hold in VRAM (for VRAM_POLICY=fit). */
  need?: VramNeed | undefined;
  /** Diffusion: take the whole GPU even if it would fit beside the LLM (the retry after an out-of-memory). */
  exclusive?: boolean | undefined;
  /** LLM: the model the call uses, when known (beside a drawing, only resident models are served). */
  model?: string | undefined;
}

/** Told the new holder each time the GPU changes hands (see GpuScheduler.onHolderChange). */
export type HolderChangeListener = (holder: GpuHolderState) => void;

/** Told the new state() each time it changes: LLM state, holder, queue (see GpuScheduler.onStateChange). */
export type StateChangeListener = (state: GpuSchedulerState) => void;

export const DEFAULT_MAX_QUEUE = 16;
export const DEFAULT_MAX_BATCH = 8;

/** Someone events can be sent to: a waiting job, or a job that released the GPU. */
interface Job {
  readonly jobId: string;
  readonly onEvent: GpuEventListener | undefined;
}

interface Waiter extends Job {
  readonly phase: GpuPhase;
  readonly enqueuedAt: number;
  readonly need: VramNeed | undefined;
  readonly exclusive: boolean;
  readonly model: string | undefined;
  /** The fit check said no (or failed): this job swaps. */
  fitRefused: boolean;
  /** The last position announced in a `queued` event. */
  announcedPosition: number | undefined;
  grant(lease: GpuLease): void;
  fail(error: Error): void;
}

type Holder =
  | { kind: "idle" }
  | { kind: "llm"; leases: Set<GrantedLease>; since: number }
  | { kind: "diffusion"; lease: GrantedLease };

/** What one decision did (the release of a diffusion lease reports it back). */
type Step =
  | { kind: "wait" }
  | { kind: "granted_llm"; jobIds: string[] }
  | { kind: "granted_diffusion"; jobId: string }
  | { kind: "unloading"; forJobId: string }
  | { kind: "checking_fit"; forJobId: string }
  | { kind: "reloading"; done: Promise<ReleaseOutcome> };

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

const IDLE: Holder = { kind: "idle" };
const WAIT: Step = { kind: "wait" };
const NOTHING: ReleaseOutcome = { kind: "none" };

export class GpuScheduler {
  readonly maxQueue: number;
  readonly maxBatch: number;

  readonly #llm: LlmResidency;
  readonly #diffusion: DiffusionResidency | undefined;
  readonly #fit: FitAdvisor | undefined;
  readonly #log: (message: string, fields: Record<string, unknown>) => void;
  readonly #now: () => number;
  readonly #llmState: LlmResidencyState;
  readonly #counters = new SchedulerCounters();

  #holder: Holder = IDLE;
  /** Waiting jobs in arrival order. */
  #queue: Waiter[] = [];
  /** A diffusion job running beside the resident LLM (VRAM_POLICY=fit), and what was decided. */
  #beside: { lease: GrantedLease; decision: FitDecision } | undefined;
  /** The job whose fit check is running (one at a time; decisions wait for it). */
  #fitCheck: Waiter | undefined;
  /** The diffusion batch in progress: set by a confirmed unload, ended by the next reload. */
  #batch: { jobs: number } | undefined;
  #closing = false;
  #onSettled: (() => void)[] = [];
  readonly #holderListeners = new Set<HolderChangeListener>();
  /** The holder the listeners were last told of. */
  #announcedHolder: Holder | GrantedLease = IDLE;
  readonly #stateListeners = new Set<StateChangeListener>();
  /** state() as the state listeners were last told of it (JSON: compared, never read). */
  #announcedState = "";

  constructor(options: GpuSchedulerOptions) {
    this.maxQueue = positiveInteger("maxQueue", options.maxQueue ?? DEFAULT_MAX_QUEUE);
    this.maxBatch = positiveInteger("maxBatch", options.maxBatch ?? DEFAULT_MAX_BATCH);
    this.#llm = options.llm;
    this.#diffusion = options.diffusion;
    this.#fit = options.fit;
    this.#log = options.log ?? (() => {});
    this.#now = options.now ?? Date.now;
    this.#llmState = new LlmResidencyState(this.#now);
  }

  // ---------------------------------------------------------------- public API

  /**
   * Waits for the GPU in `phase`. Rejects at once with QueueFullError (queue at maxQueue),
   * SchedulerClosedError (shutting down), LeaseConflictError (the job would wait for
   * itself) or AcquireAbortedError (signal already aborted); later with AcquireAbortedError
   * when the signal fires while waiting, or with the control plane's own error when the LLM
   * would not leave VRAM for this diffusion job.
   */
  acquire(phase: GpuPhase, options: AcquireOptions): Promise<GpuLease> {
    const { jobId, signal, onEvent, need, exclusive, model } = options;
    const refused = this.#refusal(phase, jobId, signal);
    if (refused) return Promise.reject(refused);

    return new Promise<GpuLease>((resolve, reject) => {
      const onAbort = (): void => this.#abandon(waiter, signal?.reason);
      const waiter: Waiter = {
        jobId,
        phase,
        onEvent,
        need,
        exclusive: exclusive ?? false,
        model,
        fitRefused: false,
        enqueuedAt: this.#now(),
        announcedPosition: undefined,
        grant: (lease) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(lease);
        },
        fail: (error) => {
          signal?.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#queue.push(waiter);
      this.#advance();
    });
  }

  /**
   * Whether a new job would be turned away now (shutting down, queue full), asked before
   * it starts so the answer comes before the first byte of a response. acquire() applies
   * the same rule, with the same Retry-After estimate.
   */
  admissionRefusal(): QueueFullError | SchedulerClosedError | undefined {
    if (this.#closing) return new SchedulerClosedError("(new job)");
    return this.#queueFull();
  }

  /** A compact snapshot: LLM state, who holds the GPU, who waits. */
  state(): GpuSchedulerState {
    return {
      llm: this.#llmState.state,
      gpu: this.#holderState(),
      queue: this.#queue.map(({ jobId, phase }) => ({ jobId, phase })),
      batchJobs: this.#batch?.jobs,
      closing: this.#closing,
    };
  }

  stats(): GpuSchedulerStats {
    const now = this.#now();
    const c = this.#counters;
    return {
      llm: this.#llmState.snapshot(),
      gpu: this.#holderState(),
      queue: this.#queue.map((w, index) => ({
        jobId: w.jobId,
        phase: w.phase,
        position: index + 1,
        waitingMs: now - w.enqueuedAt,
      })),
      unloads: c.unloads.summary(),
      reloads: c.reloads.summary(),
      failures: { ...c.failures, last: c.failures.last && { ...c.failures.last } },
      waits: { llm: c.waits.llm.summary(), diffusion: c.waits.diffusion.summary() },
      holds: { llm: c.holds.llm.summary(), diffusion: c.holds.diffusion.summary() },
      grants: { ...c.grants },
      diffusionBatches: { ...c.batches },
      rejected: { ...c.rejected },
      fit: { ...c.fit },
    };
  }

  /**
   * Resolves once nothing is held, nobody waits, no unload/reload is running and the LLM
   * has been put back (or the attempt to put it back failed).
   */
  whenSettled(): Promise<void> {
    if (this.#settled) return Promise.resolve();
    return new Promise((resolve) => this.#onSettled.push(resolve));
  }

  /**
   * Calls `listener` with the new holder each time the GPU changes hands: idle, the LLM
   * (a first LLM lease; more joining it are no change), a diffusion job (also straight
   * from one diffusion job to the next, in a batch). Told once per decision, after it, in
   * a microtask like job events, so a listener cannot re-enter a decision; changes come in
   * order, and when the GPU has changed hands again by then, the next call says so.
   * Returns the function that stops the calls.
   */
  onHolderChange(listener: HolderChangeListener): () => void {
    this.#holderListeners.add(listener);
    return () => void this.#holderListeners.delete(listener);
  }

  /**
   * Calls `listener` with state() each time a decision changed it: the LLM's state (an
   * unload or reload beginning or ending), the holder, or the queue (a job joining,
   * leaving, granted). For watchers that show the whole picture (the operator page's event
   * stream); delivered like onHolderChange, in a microtask after the decision, in order.
   */
  onStateChange(listener: StateChangeListener): () => void {
    this.#stateListeners.add(listener);
    return () => void this.#stateListeners.delete(listener);
  }

  /** Shutdown that finishes the queue: refuse new acquires, serve the waiting ones, leave the LLM loaded. */
  drain(): Promise<void> {
    this.#closing = true;
    this.#advance();
    return this.whenSettled();
  }

  /** Shutdown now: refuse new acquires, reject waiting ones, wait for holders, leave the LLM loaded. */
  close(): Promise<void> {
    this.#closing = true;
    for (const waiter of [...this.#queue]) {
      this.#take(waiter);
      this.#counters.rejected.closed += 1;
      waiter.fail(new SchedulerClosedError(waiter.jobId));
    }
    this.#advance();
    return this.whenSettled();
  }

  // ---------------------------------------------------------------- deciding

  /** Runs the decision, then tells waiting jobs where they stand. */
  #advance(cause?: Job): Step {
    const step = this.#decide(cause);
    this.#announceHolder();
    this.#announceState();
    this.#announcePositions();
    if (this.#settled) for (const resolve of this.#onSettled.splice(0)) resolve();
    return step;
  }

  /**
   * The one place that decides what the GPU does next. `cause` is the job whose release led
   * here: it hears about the reload it triggered.
   */
  #decide(cause: Job | undefined): Step {
    // An unload, a reload or a fit check is running; its end comes back here.
    if (this.#llmState.busy || this.#fitCheck) return WAIT;
    const holder = this.#holder;
    if (holder.kind === "diffusion") return WAIT; // exclusive until released

    const nextDiffusion = this.#queue.find((w) => w.phase === "diffusion");
    const llmWaiting = this.#queue.some((w) => w.phase === "llm");

    if (this.#beside) {
      // A drawing beside the LLM: one diffusion job at a time, and the LLM keeps serving
      // the models that were resident when the fit was decided.
      return llmWaiting ? this.#grantLlmWaiters(this.#beside.decision.models) : WAIT;
    }
    // VRAM_POLICY=fit: before anything moves, ask whether the next drawing fits beside the LLM.
    if (nextDiffusion && this.#mayFit(nextDiffusion)) return this.#startFitCheck(nextDiffusion);

    if (holder.kind === "llm") {
      // Rule 4: a waiting diffusion job closes the door on newcomers; the leases drain.
      if (nextDiffusion || !llmWaiting) return WAIT;
      return this.#serveLlm(cause);
    }

    const next = this.#nextPhase(nextDiffusion, llmWaiting);
    if (next === "diffusion" && nextDiffusion) return this.#serveDiffusion(nextDiffusion);
    if (next === "llm") return this.#serveLlm(cause);
    // Nobody waits. Invariant 3: the GPU is not left idle with the LLM taken out.
    if (this.#llmState.confirmedOut) return this.#startReload(cause);
    return WAIT;
  }

  /** The GPU is idle: which phase goes next (rules 1 and 2). */
  #nextPhase(nextDiffusion: Waiter | undefined, llmWaiting: boolean): GpuPhase | undefined {
    if (!nextDiffusion) return llmWaiting ? "llm" : undefined;
    if (!llmWaiting) return "diffusion";
    if (this.#batch) return this.#batch.jobs < this.maxBatch ? "diffusion" : "llm";
    return this.#queue[0]?.phase;
  }

  /** Whether a fit check is worth asking for this job: fit policy on, the LLM not out, not refused before. */
  #mayFit(waiter: Waiter): boolean {
    return this.#fit !== undefined && !waiter.exclusive && !waiter.fitRefused && !this.#llmState.confirmedOut;
  }

  #startFitCheck(waiter: Waiter): Step {
    this.#fitCheck = waiter;
    const fit = this.#fit!;
    void settle(() => fit.check(waiter.need)).then((result) =>
      this.#safely("finishing a fit check", undefined, () => this.#finishFitCheck(waiter, result)),
    );
    return { kind: "checking_fit", forJobId: waiter.jobId };
  }

  #finishFitCheck(waiter: Waiter, result: Settled<FitDecision>): void {
    this.#fitCheck = undefined;
    const decision: FitDecision = result.ok
      ? result.value
      : { fits: false, message: `the GPU's memory could not be read (${errorMessage(result.error)}): moving the LLM out`, models: [] };
    this.#counters.fit.last = decision;
    const waiting = this.#queue.includes(waiter);
    const canShare = !this.#llmState.confirmedOut && !this.#llmState.busy && this.#holder.kind !== "diffusion" && !this.#beside;
    if (waiting && decision.fits && canShare) {
      this.#grantBeside(waiter, decision);
    } else if (waiting) {
      waiter.fitRefused = true;
      this.#counters.fit.wholeGpu += 1;
      this.#log("diffusion needs the whole GPU", { jobId: waiter.jobId, reason: decision.message });
      this.#emit(waiter, { type: "needs_whole_gpu", message: decision.message });
    }
    this.#advance();
  }

  #grantBeside(waiter: Waiter, decision: FitDecision): void {
    this.#take(waiter);
    this.#counters.fit.besideLlm += 1;
    this.#emit(waiter, {
      type: "fits_beside_llm",
      message: decision.message,
      models: decision.models,
      needMiB: decision.needMiB,
      freeMiB: decision.freeMiB,
      totalMiB: decision.totalMiB,
    });
    const lease = this.#lease(waiter, true);
    this.#beside = { lease, decision };
    this.#log("GPU granted", { jobId: waiter.jobId, phase: "diffusion", besideLlm: decision.models, reason: decision.message });
    waiter.grant(lease);
  }

  #serveDiffusion(next: Waiter): Step {
    // Unknown, resident or failed: it may be in VRAM. Only a confirmed unload lets diffusion in.
    if (this.#llmState.confirmedOut) return this.#grantDiffusion(next);
    return this.#startUnload(next);
  }

  #serveLlm(cause: Job | undefined): Step {
    if (this.#llmState.needsReload) return this.#startReload(cause);
    return this.#grantLlmWaiters();
  }

  // ---------------------------------------------------------------- granting

  #grantDiffusion(waiter: Waiter): Step {
    if (this.#holder.kind !== "idle" || !this.#llmState.confirmedOut || !this.#batch) {
      throw new GpuInvariantError(
        `diffusion grant for ${waiter.jobId} with GPU ${this.#holder.kind} and LLM ${this.#llmState.state}`,
      );
    }
    this.#take(waiter);
    this.#batch.jobs += 1;
    const lease = this.#lease(waiter);
    this.#holder = { kind: "diffusion", lease };
    this.#log("GPU granted", { jobId: waiter.jobId, phase: "diffusion", batchJobs: this.#batch.jobs });
    waiter.grant(lease);
    return { kind: "granted_diffusion", jobId: waiter.jobId };
  }

  /**
   * Grants every waiting LLM job (rule 3); beside a drawing, only those for the models
   * resident when its fit was decided (or that name none: DiffuGen's own calls).
   */
  #grantLlmWaiters(onlyModels?: readonly string[]): Step {
    const waiters = this.#queue.filter(
      (w) => w.phase === "llm" && (onlyModels === undefined || w.model === undefined || onlyModels.includes(w.model)),
    );
    if (waiters.length === 0) return WAIT;
    const holder = this.#holder;
    if (holder.kind === "diffusion" || this.#llmState.busy || this.#llmState.confirmedOut) {
      throw new GpuInvariantError(`LLM grant with GPU ${holder.kind} and LLM ${this.#llmState.state}`);
    }
    const llmHolder = holder.kind === "llm" ? holder : { kind: "llm" as const, leases: new Set<GrantedLease>(), since: this.#now() };
    this.#holder = llmHolder;
    for (const waiter of waiters) {
      this.#take(waiter);
      const lease = this.#lease(waiter);
      llmHolder.leases.add(lease);
      waiter.grant(lease);
    }
    this.#log("GPU granted", { jobIds: waiters.map((w) => w.jobId), phase: "llm", leases: llmHolder.leases.size });
    return { kind: "granted_llm", jobIds: waiters.map((w) => w.jobId) };
  }

  #lease(waiter: Waiter, besideLlm = false): GrantedLease {
    const now = this.#now();
    const waitedMs = now - waiter.enqueuedAt;
    this.#counters.waits[waiter.phase].record(waitedMs);
    this.#counters.grants[waiter.phase] += 1;
    this.#emit(waiter, { type: "granted", phase: waiter.phase, waitedMs });
    return new GrantedLease(waiter.jobId, waiter.phase, now, waitedMs, (lease) => this.#release(lease, waiter), besideLlm);
  }

  /** Called once per lease (GrantedLease makes release idempotent). */
  async #release(lease: GrantedLease, job: Job): Promise<ReleaseOutcome> {
    try {
      this.#counters.holds[lease.phase].record(this.#now() - lease.grantedAt);
      const holder = this.#holder;
      if (lease.phase === "llm") {
        if (holder.kind !== "llm" || !holder.leases.delete(lease)) {
          throw new GpuInvariantError(`LLM lease of ${lease.jobId} released while GPU is ${holder.kind}`);
        }
        if (holder.leases.size === 0) this.#holder = IDLE;
        this.#log("GPU released", { jobId: lease.jobId, phase: "llm", leases: holder.leases.size });
        this.#advance();
        return NOTHING;
      }
      if (this.#beside?.lease === lease) {
        // The LLM never left: nothing to reload.
        this.#beside = undefined;
        this.#log("GPU released", { jobId: lease.jobId, phase: "diffusion", besideLlm: true });
        const step = this.#advance(job);
        // The burst is over (no drawing next): what still holds the image model (a kept
        // sd-server) goes, so the LLM side has the memory between bursts, as after a swap.
        if (step.kind !== "checking_fit" && !this.#queue.some((w) => w.phase === "diffusion")) {
          await this.#diffusion?.release().catch((error: unknown) => this.#log("releasing the image model failed", { error: errorMessage(error) }));
        }
        return { kind: "llm_stayed" };
      }
      if (holder.kind !== "diffusion" || holder.lease !== lease) {
        throw new GpuInvariantError(`diffusion lease of ${lease.jobId} released while GPU is ${holder.kind}`);
      }
      this.#holder = IDLE;
      this.#log("GPU released", { jobId: lease.jobId, phase: "diffusion" });
      const step = this.#advance(job);
      if (step.kind === "granted_diffusion") return { kind: "handed_over", toJobId: step.jobId };
      if (step.kind === "reloading") return await step.done;
      return NOTHING;
    } catch (error) {
      this.#log("GPU release failed", { jobId: lease.jobId, phase: lease.phase, error: errorMessage(error) });
      return NOTHING;
    }
  }

  // ---------------------------------------------------------------- unload / reload

  #startUnload(forJob: Waiter): Step {
    const from = this.#llmState.state;
    this.#llmState.beginUnload();
    const startedAt = this.#now();
    this.#log("unloading LLM", { jobId: forJob.jobId, from });
    this.#announcePositions(); // "queued" comes before "unloading_llm" for the job this is for
    this.#emit(forJob, { type: "unloading_llm" });
    // No signal: an unload is never abandoned half-way, even if forJob stops waiting.
    void settle(() => this.#llm.unloadAll()).then((result) =>
      this.#safely("finishing unload", undefined, () => this.#finishUnload(forJob, startedAt, result)),
    );
    return { kind: "unloading", forJobId: forJob.jobId };
  }

  #finishUnload(forJob: Waiter, startedAt: number, result: Settled<UnloadReport>): void {
    const durationMs = this.#now() - startedAt;
    if (result.ok) {
      const report = result.value;
      this.#llmState.unloaded();
      this.#counters.unloads.record(durationMs);
      this.#counters.batchStarted();
      this.#batch = { jobs: 0 };
      this.#log("LLM unloaded", { durationMs, models: report.unloaded, reachable: report.reachable });
      // The GPU goes to the first diffusion job still waiting: forJob, unless it gave up meanwhile.
      const next = this.#queue.find((w) => w.phase === "diffusion");
      if (next) {
        this.#emit(next, {
          type: "llm_unloaded",
          durationMs,
          models: report.unloaded,
          reachable: report.reachable,
          freeVramMiB: report.freeVramMiB,
          ...(report.warning === undefined ? {} : { warning: report.warning }),
        });
      }
      this.#advance();
      return;
    }

    // A model would not leave: forJob cannot start. Put the LLM back so chat keeps working,
    // then go on with the next waiter (a diffusion job behind tries its own unload).
    const message = errorMessage(result.error);
    this.#llmState.unloadFailed(message);
    this.#counters.recordFailure("unload", message, this.#now());
    this.#log("LLM unload failed", { jobId: forJob.jobId, durationMs, error: message });
    if (this.#take(forJob)) {
      this.#emit(forJob, { type: "llm_unload_failed", durationMs, error: message });
      forJob.fail(result.error instanceof Error ? result.error : new LlmUnloadFailedError(message, { cause: result.error }));
    }
    this.#startReload(undefined);
    this.#advance();
  }

  #startReload(cause: Job | undefined): Step {
    const from = this.#llmState.state;
    this.#llmState.beginLoad();
    if (this.#batch) {
      this.#counters.batchEnded(this.#batch.jobs);
      this.#batch = undefined;
    }
    const startedAt = this.#now();
    this.#log("reloading LLM", { from, jobId: cause?.jobId });
    this.#announcePositions(); // "queued" comes before "reloading_llm" for the LLM jobs waiting for it
    this.#emitToReloadAudience(cause, { type: "reloading_llm" });
    // The burst's image model leaves VRAM first: the LLM never loads beside it.
    const done = settle(async () => {
      await this.#diffusion?.release();
      return this.#llm.reload();
    }).then((result) =>
      this.#safely("finishing reload", NOTHING, () => this.#finishReload(cause, startedAt, result)),
    );
    return { kind: "reloading", done };
  }

  #finishReload(cause: Job | undefined, startedAt: number, result: Settled<ReloadReport>): ReleaseOutcome {
    const durationMs = this.#now() - startedAt;
    let event: GpuEvent;
    let outcome: ReleaseOutcome;
    if (result.ok && result.value.reachable) {
      const report = result.value;
      this.#llmState.loaded();
      this.#counters.reloads.record(durationMs);
      this.#log("LLM reloaded", { durationMs, model: report.model, fullyOnGpu: report.fullyOnGpu, warning: report.warning });
      event = { type: "llm_reloaded", durationMs, model: report.model, fullyOnGpu: report.fullyOnGpu, warning: report.warning };
      outcome = { kind: "llm_reloaded", report };
    } else {
      const message = result.ok
        ? `Ollama is not reachable; ${result.value.model} was not loaded`
        : errorMessage(result.error);
      this.#llmState.loadFailed(message);
      this.#counters.recordFailure("reload", message, this.#now());
      this.#log("LLM reload failed", { durationMs, error: message });
      event = { type: "llm_reload_failed", durationMs, error: message };
      outcome = { kind: "llm_reload_failed", error: message };
    }
    this.#emitToReloadAudience(cause, event);
    // Rule 3. Also after a failure: nothing else is on the GPU, their own calls will say why,
    // and the next LLM acquire tries the reload again.
    this.#grantLlmWaiters();
    this.#advance();
    return outcome;
  }

  // ---------------------------------------------------------------- queue bookkeeping

  #refusal(phase: GpuPhase, jobId: string, signal: AbortSignal | undefined): Error | undefined {
    const rejected = this.#counters.rejected;
    if (this.#closing) {
      rejected.closed += 1;
      return new SchedulerClosedError(jobId);
    }
    if (signal?.aborted) {
      rejected.aborted += 1;
      return new AcquireAbortedError(jobId, phase, signal.reason);
    }
    const held = this.#heldPhase(jobId);
    if (held === "diffusion" || (held === "llm" && phase === "diffusion")) {
      rejected.conflicts += 1;
      return new LeaseConflictError(jobId, phase, held);
    }
    const full = this.#queueFull();
    if (full) rejected.queueFull += 1;
    return full;
  }

  #queueFull(): QueueFullError | undefined {
    if (this.#queue.length < this.maxQueue) return undefined;
    const waitMs = estimateWaitMs(this.#counters, this.#holderState(), this.#queue, this.#now());
    return new QueueFullError(Math.max(1, Math.ceil(waitMs / 1000)), this.#queue.length, this.maxQueue);
  }

  /** The job's signal fired while it waited: it leaves the line at once. */
  #abandon(waiter: Waiter, reason: unknown): void {
    if (!this.#take(waiter)) return;
    this.#counters.rejected.aborted += 1;
    this.#log("job stopped waiting", { jobId: waiter.jobId, phase: waiter.phase });
    waiter.fail(new AcquireAbortedError(waiter.jobId, waiter.phase, reason));
    this.#advance();
  }

  /** Removes a waiter from the queue; false if it had already left. */
  #take(waiter: Waiter): boolean {
    const index = this.#queue.indexOf(waiter);
    if (index < 0) return false;
    this.#queue.splice(index, 1);
    return true;
  }

  #announcePositions(): void {
    this.#queue.forEach((waiter, index) => {
      const position = index + 1;
      if (waiter.announcedPosition === position) return;
      waiter.announcedPosition = position;
      this.#emit(waiter, { type: "queued", phase: waiter.phase, position, ahead: index });
    });
  }

  get #settled(): boolean {
    return (
      this.#holder.kind === "idle" &&
      this.#beside === undefined &&
      this.#fitCheck === undefined &&
      this.#queue.length === 0 &&
      !this.#llmState.busy &&
      !this.#llmState.confirmedOut
    );
  }

  #heldPhase(jobId: string): GpuPhase | undefined {
    if (this.#beside?.lease.jobId === jobId) return "diffusion";
    const holder = this.#holder;
    if (holder.kind === "diffusion") return holder.lease.jobId === jobId ? "diffusion" : undefined;
    if (holder.kind === "llm") {
      for (const lease of holder.leases) if (lease.jobId === jobId) return "llm";
    }
    return undefined;
  }

  #holderState(): GpuHolderState {
    const beside = this.#beside;
    if (beside) {
      const llmLeases = this.#holder.kind === "llm" ? this.#holder.leases.size : 0;
      return { kind: "diffusion", jobId: beside.lease.jobId, since: beside.lease.grantedAt, besideLlm: beside.decision.models, llmLeases };
    }
    const holder = this.#holder;
    switch (holder.kind) {
      case "idle":
        return { kind: "idle" };
      case "llm":
        return {
          kind: "llm",
          leases: holder.leases.size,
          jobIds: [...holder.leases].map((lease) => lease.jobId),
          since: holder.since,
        };
      case "diffusion":
        return { kind: "diffusion", jobId: holder.lease.jobId, since: holder.lease.grantedAt };
    }
  }

  // ---------------------------------------------------------------- events

  /** Tells the holder-change listeners when the GPU changed hands since they were last told. */
  #announceHolder(): void {
    // A drawing beside the LLM is a change of hands too, though the LLM's leases stay.
    const current = this.#beside?.lease ?? this.#holder;
    if (current === this.#announcedHolder) return;
    this.#announcedHolder = current;
    const holder = this.#holderState();
    for (const listener of this.#holderListeners) {
      queueMicrotask(() => {
        try {
          listener(holder);
        } catch (error) {
          this.#log("GPU holder listener threw", { holder: holder.kind, error: errorMessage(error) });
        }
      });
    }
  }

  /** Tells the state listeners when state() differs from what they were last told. */
  #announceState(): void {
    if (this.#stateListeners.size === 0) return;
    const state = this.state();
    const key = JSON.stringify(state);
    if (key === this.#announcedState) return;
    this.#announcedState = key;
    for (const listener of this.#stateListeners) {
      queueMicrotask(() => {
        try {
          listener(state);
        } catch (error) {
          this.#log("GPU state listener threw", { error: errorMessage(error) });
        }
      });
    }
  }

  /** The job that triggered a reload, and every LLM job waiting for it. */
  #emitToReloadAudience(cause: Job | undefined, event: GpuEvent): void {
    if (cause) this.#emit(cause, event);
    for (const waiter of this.#queue) if (waiter.phase === "llm" && waiter !== cause) this.#emit(waiter, event);
  }

  /**
   * Listeners run in a microtask, in order: the scheduler's state is consistent before any
   * outside code runs, and a listener cannot re-enter a decision half-way.
   */
  #emit(job: Job, event: GpuEvent): void {
    const listener = job.onEvent;
    if (!listener) return;
    queueMicrotask(() => {
      try {
        listener(event);
      } catch (error) {
        this.#log("GPU event listener threw", { jobId: job.jobId, type: event.type, error: errorMessage(error) });
      }
    });
  }

  #safely<T>(what: string, fallback: T, run: () => T): T {
    try {
      return run();
    } catch (error) {
      this.#log(`GPU scheduler failed ${what}`, { error: errorMessage(error), llm: this.#llmState.state });
      return fallback;
    }
  }
}

function settle<T>(call: () => Promise<T>): Promise<Settled<T>> {
  try {
    return call().then(
      (value): Settled<T> => ({ ok: true, value }),
      (error: unknown): Settled<T> => ({ ok: false, error }),
    );
  } catch (error) {
    return Promise.resolve({ ok: false, error });
  }
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}
