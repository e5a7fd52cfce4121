import type { DrawingParams, ProgressEvent, StepInfo } from "../../events/progress-event.js";
import type { SdBackendKind } from "../../diffusion/index.js";
import type { GpuHolderState, GpuPhase, LlmState } from "../../gpu/index.js";
import type { JobRecord } from "../../jobs/index.js";

/**
 * What the operator page hears through GET /v1/events: every change of who holds the GPU,
 * of the LLM's state, of the queue, every job's life (started, progress with step and ETA,
 * previews, images, outcome), every LLM call through the gateway, and the spans of the
 * timeline these make. Kept here as they happened (server paths, epoch milliseconds); the
 * route formats them for each client (format/activity-view.ts: links, snake_case).
 */

/** One waiting job or gated LLM call, in the scheduler's order. */
export interface QueueEntry {
  jobId: string;
  phase: GpuPhase;
  /** 1-based. */
  position: number;
  /** Epoch ms when it was first seen waiting. */
  since: number;
  /** What it is, in words: an image job's prompt, a gateway call's route and model. */
  label: string;
}

export type SpanLane = "llm" | "diffusion";
/**
 * unload, load: the LLM leaving or coming back to VRAM (a swap is one of each);
 * llm_call: an LLM lease held (a job refining its prompt, a gateway call);
 * image_job: a diffusion job holding the GPU.
 */
export type SpanKind = "unload" | "load" | "llm_call" | "image_job";

/** One bar of the timeline; `end` is unset while it lasts. Sent again when it ends (same id). */
export interface TimelineSpan {
  id: string;
  lane: SpanLane;
  kind: SpanKind;
  label: string;
  /** The job or call that holds the GPU (llm_call, image_job). */
  jobId?: string | undefined;
  start: number;
  end?: number | undefined;
  /** How it ended, when that is news: `failed` for an unload or reload that failed. */
  outcome?: string | undefined;
}

/** A gated LLM call through the gateway (Ollama's API, or OpenAI's for an Ollama model). */
export interface GatewayCallActivity {
  id: string;
  via: "ollama" | "openai";
  route: string;
  model: string;
  state: "admitted" | "ended";
  /** Epoch ms when it was admitted. */
  since: number;
  /** Once ended: Ollama's status (or DiffuGen's refusal); null when the answer was a stream whose status was not seen. */
  status?: number | null | undefined;
  outcome?: string | undefined;
  durationMs?: number | undefined;
}

/** What a running job looks like right now (the snapshot's live jobs; job.progress carries the same). */
export interface LiveJob {
  jobId: string;
  phase: ProgressEvent["phase"];
  progress: number;
  message: string;
  step?: StepInfo | undefined;
  /** Which program draws it, once sd.cpp has started for it. */
  backend?: SdBackendKind | undefined;
  /** The latest preview, base64 PNG. */
  preview?: { pngBase64: string; width: number; height: number } | undefined;
}

export type ActivityEvent =
  | { type: "gpu.holder"; at: number; holder: GpuHolderState }
  | { type: "gpu.llm"; at: number; state: LlmState }
  | { type: "gpu.queue"; at: number; queue: QueueEntry[] }
  | { type: "timeline.span"; at: number; span: TimelineSpan }
  | { type: "job.started"; at: number; job: JobRecord }
  | { type: "job.progress"; at: number; job: Omit<LiveJob, "preview"> }
  | { type: "job.refined"; at: number; jobId: string; prompt: string; negativePrompt: string; fellBack: boolean }
  | { type: "job.params"; at: number; jobId: string; model: string; params: DrawingParams }
  | { type: "job.preview"; at: number; jobId: string; pngBase64: string; width: number; height: number; step?: number | undefined }
  | { type: "job.image"; at: number; jobId: string; file: string; seed: number; width: number; height: number; index: number }
  | { type: "job.warning"; at: number; jobId: string; message: string }
  /** The answer is known: the job's record as it ends (status, result, error). */
  | { type: "job.outcome"; at: number; job: JobRecord }
  | { type: "gateway.call"; at: number; call: GatewayCallActivity };

export type ActivityEventType = ActivityEvent["type"];

/** The whole picture at one event id: what a page starts from (and starts again from after a `reset`). */
export interface ActivitySnapshot {
  /** The id of the last event the snapshot includes: the stream goes on after it. */
  lastId: number;
  at: number;
  gpu: { holder: GpuHolderState; llm: LlmState; llmSince: number; queue: QueueEntry[]; batchJobs: number | undefined };
  /** The spans of the timeline window (15 minutes) and those still open. */
  spans: TimelineSpan[];
  /** Jobs running now, with their latest progress and preview. */
  jobs: LiveJob[];
  /** Gateway calls admitted and not ended yet. */
  calls: GatewayCallActivity[];
}
