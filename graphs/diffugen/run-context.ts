import type { GenerationParams } from "../../src/diffusion/index.js";
import type { GpuEventListener, GpuLease, ReleaseOutcome } from "../../src/gpu/index.js";
import type { DiffugenDeps } from "./dependencies.js";
import { EarlyLease } from "./early-lease.js";

/**
 * Everything one run of the graph shares between its nodes that is not state: the
 * capabilities it calls, its own abort signal and its GPU leases. Whoever starts a
 * run makes one (the job runner, `diffugen generate`, the Studio entry) and passes it as
 * LangGraph's run `context`; LangGraph hands the same object to every node of the run.
 */
export interface DiffugenRunContext {
  deps: DiffugenDeps;
  /**
   * Aborts when the whole run is cancelled. A node's own `runtime.signal` is detached when
   * the node returns, so it cannot guard what spans nodes (the GPU lease).
   */
  signal: AbortSignal;
  /** The diffusion lease, from `unload` to `diffuse`, and what giving it back set off, for `reload`. */
  lease: LeaseSlot;
  /**
   * The LLM lease, from `refine` to `reply`: a chat turn that decided to answer in words
   * keeps the LLM it decided with. Given back between the two, it would let an image job
   * that arrived meanwhile take the GPU first, and the reply would wait for its picture.
   */
  llmLease: LeaseSlot;
  /**
   * The request as admission resolved it (src/jobs/admission.ts), when the run was
   * admitted: `refine` draws with exactly these instead of resolving the request again.
   * Absent for a run nobody admitted (Studio's): `refine` checks and resolves it then.
   */
  admitted?: AdmittedRequest | undefined;
}

export interface AdmittedRequest {
  /** The registry name of the model. */
  model: string;
  /** Every parameter, the seed drawn. */
  params: GenerationParams;
  /** The client shows live previews (OpenAI's `partial_images`): drawn on sd-cli, which writes them. */
  previews?: boolean | undefined;
}

/** A run context for `deps`; `signal` is the run's (the one given to graph.stream). */
export function createRunContext(deps: DiffugenDeps, signal?: AbortSignal, admitted?: AdmittedRequest): DiffugenRunContext {
  const runSignal = signal ?? new AbortController().signal;
  return { deps, signal: runSignal, lease: new LeaseSlot(runSignal), llmLease: new LeaseSlot(runSignal), admitted };
}

/** True for a context made by createRunContext (not a caller's bare `{deps}`). */
export function isRunContext(context: unknown): context is DiffugenRunContext {
  return typeof context === "object" && context !== null && (context as { lease?: unknown }).lease instanceof LeaseSlot;
}

/**
 * Holds one run's GPU lease between the nodes that share it. The diffusion lease: `unload`
 * takes it, `diffuse` uses it and gives it back, `reload` waits for what giving it back set
 * off (the LLM reload, or the hand-over to the next image job). The LLM lease: `refine`
 * keeps it for `reply`, which uses it and gives it back.
 *
 * A lease may be asked for early, by the node before the one that waits for it
 * (`requestEarly`, early-lease.ts): the grant is held here as soon as it comes.
 *
 * A lease must never outlive its run. The run's signal releases it, so an abort that lands
 * between two nodes (LangGraph then rejects the stream at once and runs no further node)
 * still gives the GPU back. But once a node has claimed the lease, only that node may give
 * it back: `diffuse` does so after sd-cli has exited, because releasing while the process
 * is still dying would let the LLM load beside it; `reply` once its Ollama call has ended.
 */
export class LeaseSlot {
  #lease: GpuLease | undefined;
  #claimed = false;
  #released: Promise<ReleaseOutcome> | undefined;
  #besideLlm = false;
  #early: EarlyLease | undefined;

  constructor(private readonly runSignal: AbortSignal) {}

  /**
   * Asks for the lease now (`acquire` with the run's signal: it outlives the asking node),
   * for a later node to wait for with takeEarly(). The grant is held here the moment it
   * comes, so an abort before the waiting node runs still gives it back.
   */
  requestEarly(acquire: (onEvent: GpuEventListener) => Promise<GpuLease>): void {
    const early = new EarlyLease(acquire);
    this.#early = early;
    early.onGranted((lease) => this.hold(lease));
  }

  /** The early request, for the node that waits for it (once); undefined when none was made. */
  takeEarly(): EarlyLease | undefined {
    const early = this.#early;
    this.#early = undefined;
    return early;
  }

  hold(lease: GpuLease): void {
    this.#lease = lease;
    this.#besideLlm = lease.besideLlm === true;
    this.#claimed = false;
    // Nobody will ask for the outcome of an aborted run: release without keeping it.
    const onAbort = () => {
      if (this.#lease !== lease || this.#claimed) return;
      this.#lease = undefined;
      void lease.release();
    };
    if (this.runSignal.aborted) onAbort();
    else this.runSignal.addEventListener("abort", onAbort, { once: true });
  }

  /** Takes the lease for a node that will release it itself; undefined if already gone. */
  claim(): GpuLease | undefined {
    if (this.#lease) this.#claimed = true;
    return this.#lease;
  }

  /** Idempotent: gives the GPU back and remembers what that set off, for `reload`. */
  release(): Promise<ReleaseOutcome> | undefined {
    const lease = this.#lease;
    if (!lease) return this.#released;
    this.#lease = undefined;
    this.#claimed = false;
    this.#released = lease.release();
    return this.#released;
  }

  /** What releasing the lease set off (once; forgotten afterwards). */
  takeOutcome(): Promise<ReleaseOutcome> | undefined {
    const outcome = this.release();
    this.#released = undefined;
    return outcome;
  }

  /** Whether the last lease held was a drawing beside the resident LLM (VRAM_POLICY=fit). */
  get besideLlm(): boolean {
    return this.#besideLlm;
  }

  /** Whether a lease is held (not yet given back). */
  get holding(): boolean {
    return this.#lease !== undefined;
  }
}
