import type { GpuHolderState, LlmState } from "../../gpu/index.js";
import type { SpanKind, SpanLane, TimelineSpan } from "./activity-events.js";

/** How far back the page's timeline looks. */
export const TIMELINE_WINDOW_MS = 15 * 60_000;
/** A bound on what is kept, whatever happens in a quarter of an hour. */
const MAX_SPANS = 2_000;

/** What the timeline is made from: the scheduler's state, seen after each change. */
export interface TimelineInput {
  llm: LlmState;
  holder: GpuHolderState;
}

/**
 * The spans of the timeline, made from the scheduler's successive states: the LLM leaving
 * VRAM (`unload`) and coming back (`load`), each LLM lease (`llm_call`: a job refining its
 * prompt, a gateway call) and each diffusion lease (`image_job`). A swap is an unload and a
 * load around image jobs; a batch is several image jobs between one unload and one load.
 */
export class Timeline {
  #spans = new Map<string, TimelineSpan>();
  /** The open span of each lease, by job id; the open unload/load span. */
  readonly #leaseSpans = new Map<string, string>();
  #llmSpan: string | undefined;
  #next = 0;

  constructor(private readonly labelOf: (jobId: string, kind: SpanKind) => string) {}

  /**
   * Moves from one state to the next at `now`; returns the spans that opened or ended
   * (each once, in order: what ended before what began).
   */
  advance(previous: TimelineInput, next: TimelineInput, now: number): TimelineSpan[] {
    const changed: TimelineSpan[] = [];
    const before = leaseIds(previous.holder);
    const after = leaseIds(next.holder);
    for (const [jobId] of before) if (!after.has(jobId)) this.#close(this.#leaseSpans, jobId, now, changed);
    if (previous.llm !== next.llm && this.#llmSpan !== undefined) {
      const span = this.#end(this.#llmSpan, now, next.llm === "failed" ? "failed" : undefined);
      if (span) changed.push(span);
      this.#llmSpan = undefined;
    }
    if (previous.llm !== next.llm && (next.llm === "unloading" || next.llm === "loading")) {
      const kind = next.llm === "unloading" ? "unload" : "load";
      const span = this.#open("llm", kind, kind === "unload" ? "LLM out of VRAM" : "LLM back into VRAM", now);
      this.#llmSpan = span.id;
      changed.push(span);
    }
    for (const [jobId, lane] of after) {
      if (before.has(jobId)) continue;
      const kind: SpanKind = lane === "diffusion" ? "image_job" : "llm_call";
      const span = this.#open(lane, kind, this.labelOf(jobId, kind), now, jobId);
      this.#leaseSpans.set(jobId, span.id);
      changed.push(span);
    }
    this.#prune(now);
    return changed;
  }

  /** A span's label, now that more is known of its job (a gateway call's route). */
  relabel(jobId: string, label: string): TimelineSpan | undefined {
    const id = this.#leaseSpans.get(jobId);
    const span = id === undefined ? undefined : this.#spans.get(id);
    if (!span || span.label === label) return undefined;
    span.label = label;
    return { ...span };
  }

  /** The spans in the window ending at `now`, and every open one, oldest first. */
  spans(now: number): TimelineSpan[] {
    this.#prune(now);
    return [...this.#spans.values()].map((span) => ({ ...span }));
  }

  #open(lane: SpanLane, kind: SpanKind, label: string, now: number, jobId?: string): TimelineSpan {
    const span: TimelineSpan = { id: `s${++this.#next}`, lane, kind, label, start: now, ...(jobId === undefined ? {} : { jobId }) };
    this.#spans.set(span.id, span);
    return { ...span };
  }

  #close(index: Map<string, string>, key: string, now: number, changed: TimelineSpan[]): void {
    const id = index.get(key);
    index.delete(key);
    const span = id === undefined ? undefined : this.#end(id, now);
    if (span) changed.push(span);
  }

  #end(id: string, now: number, outcome?: string): TimelineSpan | undefined {
    const span = this.#spans.get(id);
    if (!span || span.end !== undefined) return undefined;
    span.end = now;
    if (outcome !== undefined) span.outcome = outcome;
    return { ...span };
  }

  #prune(now: number): void {
    const from = now - TIMELINE_WINDOW_MS;
    for (const [id, span] of this.#spans) {
      if (span.end !== undefined && span.end < from) this.#spans.delete(id);
    }
    // Map order is insertion order: the oldest go first.
    for (const [id, span] of this.#spans) {
      if (this.#spans.size <= MAX_SPANS) break;
      if (span.end !== undefined) this.#spans.delete(id);
    }
  }
}

/** Who holds a lease in this holder state, and on which lane. */
function leaseIds(holder: GpuHolderState): Map<string, SpanLane> {
  if (holder.kind === "llm") return new Map(holder.jobIds.map((id) => [id, "llm" as const]));
  if (holder.kind === "diffusion") return new Map([[holder.jobId, "diffusion" as const]]);
  return new Map();
}
