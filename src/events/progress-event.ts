/**
 * The one event type a DiffuGen run emits (DESIGN.md, "Events"). Graph nodes write it to
 * LangGraph's custom stream; every API dialect is a thin formatter of it. Every event
 * carries phase, overall progress and a human message, so any client can draw a status
 * line from any event; the `kind` says what else it carries.
 */

import type { GenerationParams } from "../diffusion/generation-request.js";

export const phases = [
  "queued",
  "refining",
  "unloading_llm",
  "loading_model",
  "sampling",
  "decoding",
  "saving",
  "reloading_llm",
  "complete",
  "error",
] as const;
export type Phase = (typeof phases)[number];

interface EventBase {
  phase: Phase;
  /** Overall progress of the run, 0-100. */
  progress: number;
  message: string;
  /** Epoch milliseconds when the event was made. */
  at: number;
}

export interface StepInfo {
  current: number;
  total: number;
  /** Measured by sd.cpp itself, not by a clock of ours. */
  secondsPerStep?: number | undefined;
  etaSeconds?: number | undefined;
  /** Which image of a batch (1-based) is sampling. */
  image?: { index: number; count: number } | undefined;
}

/**
 * Every value a drawing uses, once decided. Not the init image: that is a path on the
 * server (an upload), and events are replayed to clients (GET /v1/jobs/:id/events).
 */
export type DrawingParams = Omit<GenerationParams, "initImage">;

export type ProgressEvent =
  | (EventBase & { kind: "status"; step?: StepInfo | undefined; queue?: { position: number; ahead: number } | undefined })
  | (EventBase & { kind: "warning"; warning: string })
  | (EventBase & {
      kind: "refined";
      prompt: string;
      negativePrompt: string;
      fellBack: boolean;
    })
  /** The run will draw: with this model (registry name) and these parameters, the real seed included. */
  | (EventBase & { kind: "params"; model: string; params: DrawingParams })
  | (EventBase & { kind: "preview"; pngBase64: string; width: number; height: number; step?: StepInfo | undefined })
  | (EventBase & { kind: "image"; path: string; seed: number; width: number; height: number; index: number })
  /**
   * A piece of a reply in words, as the LLM writes it (in order; the pieces make the whole).
   * For live streams only: the job's record keeps the whole text, in the `reply` event.
   */
  | (EventBase & { kind: "reply_delta"; text: string })
  /** The whole reply in words, once written. */
  | (EventBase & { kind: "reply"; text: string })
  | (EventBase & { kind: "error"; error: { code: string; message: string } });

export type ProgressEventKind = ProgressEvent["kind"];

/**
 * Where each phase sits on the 0-100 bar. Sampling gets the lion's share because it is
 * where the time goes; the LLM reload comes after the image is delivered, so it is last.
 */
export const phaseBands: Record<Phase, readonly [number, number]> = {
  queued: [0, 0],
  refining: [0, 10],
  unloading_llm: [10, 15],
  loading_model: [15, 20],
  sampling: [20, 90],
  decoding: [90, 95],
  saving: [95, 98],
  reloading_llm: [98, 100],
  complete: [100, 100],
  error: [100, 100],
};

/** Overall progress for a fraction (0-1) of a phase. */
export function progressIn(phase: Phase, fraction = 0): number {
  const [from, to] = phaseBands[phase];
  const clamped = Math.min(1, Math.max(0, fraction));
  return Math.round((from + (to - from) * clamped) * 10) / 10;
}
