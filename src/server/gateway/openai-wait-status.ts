import type { DurationSummary, GpuSchedulerState, GpuSchedulerStats } from "../../gpu/index.js";

/**
 * The status line a chat for an Ollama model shows while it waits for the GPU ("Waiting for
 * the GPU: image 2 of 3, about 20 s"), from the scheduler's state and statistics: what holds
 * the GPU, how many image jobs will go first, and how long that should take by the times
 * measured so far.
 */

export interface GpuWaitView {
  state: GpuSchedulerState;
  stats: GpuSchedulerStats;
  /** The scheduler's maxBatch: how many image jobs a batch may run while LLM work waits. */
  maxBatch: number;
  /** The waiting call's job id (its place in the queue). */
  jobId: string;
  /** The scheduler's clock, in ms. */
  now: number;
}

/** Assumed until something has been measured (the scheduler assumes the same). */
const assumedMs = { diffusion: 60_000, llm: 10_000, unload: 5_000, reload: 10_000 } as const;

const meanOr = (summary: DurationSummary, fallback: number) => (summary.count > 0 ? summary.meanMs : fallback);

/** The image jobs that will have the GPU before this call does. */
function imagesFirst(view: GpuWaitView): number {
  const { state, maxBatch, jobId } = view;
  const waiting = state.queue.filter((job) => job.phase === "diffusion").length;
  // In a batch (LLM out of VRAM), waiting image jobs go ahead of waiting LLM work until the
  // batch has run maxBatch jobs (the scheduler's rule 2).
  if (state.gpu.kind === "diffusion" || state.llm === "unloaded") return Math.min(waiting, Math.max(0, maxBatch - (state.batchJobs ?? 0)));
  // Otherwise a batch starts only for an image job that came before this call.
  const mine = state.queue.findIndex((job) => job.jobId === jobId);
  const ahead = (mine < 0 ? state.queue : state.queue.slice(0, mine)).some((job) => job.phase === "diffusion");
  return ahead ? Math.min(waiting, maxBatch) : 0;
}

/** How long until this call likely gets the GPU, in ms. */
export function estimateGpuWaitMs(view: GpuWaitView): number {
  const { state, stats, now } = view;
  const diffusionMs = meanOr(stats.holds.diffusion, assumedMs.diffusion);
  const unloadMs = meanOr(stats.unloads, assumedMs.unload);
  const reloadMs = meanOr(stats.reloads, assumedMs.reload);
  const images = imagesFirst(view);
  const gpu = state.gpu;
  const inState = now - stats.llm.since;

  let ms = images * diffusionMs;
  if (gpu.kind === "diffusion") ms += Math.max(0, diffusionMs - (now - gpu.since));
  // LLM calls holding the GPU drain before an image job waiting ahead can start.
  if (gpu.kind === "llm" && images > 0) ms += Math.max(0, meanOr(stats.holds.llm, assumedMs.llm) - (now - gpu.since));
  if (state.llm === "unloading") ms += Math.max(0, unloadMs - inState);
  else if (images > 0 && gpu.kind !== "diffusion" && state.llm !== "unloaded") ms += unloadMs;
  if (state.llm === "loading") ms += Math.max(0, reloadMs - inState);
  else if (images > 0 || gpu.kind === "diffusion" || state.llm === "unloaded" || state.llm === "unloading") ms += reloadMs;
  return ms;
}

/** "Waiting for the GPU: image 2 of 3, about 20 s". */
export function describeGpuWait(view: GpuWaitView): string {
  const { state } = view;
  const images = imagesFirst(view);
  let what: string | undefined;
  if (state.gpu.kind === "diffusion") {
    const current = Math.max(1, state.batchJobs ?? 1);
    what = images > 0 ? `image ${current} of ${current + images}` : "an image is being drawn";
  } else if (images > 0) {
    what = `${images} image${images === 1 ? "" : "s"} ahead`;
  } else if (state.llm === "loading") {
    what = "the language model is being loaded";
  }
  const about = `about ${formatDuration(estimateGpuWaitMs(view))}`;
  return what === undefined ? `Waiting for the GPU, ${about}` : `Waiting for the GPU: ${what}, ${about}`;
}

/** The line that settles the status once the GPU is ours. */
export function describeGpuWaitOver(waitedMs: number): string {
  return `Waited ${formatDuration(waitedMs)} for the GPU`;
}

/**
 * Coarse on purpose: the line is refreshed every second or so, and every change is one more
 * status entry in OpenWebUI's history. Up to 10 s in seconds, then in steps of 5 s, then minutes.
 */
export function formatDuration(ms: number): string {
  const seconds = Math.max(1, Math.ceil(ms / 1000));
  if (seconds <= 10) return `${seconds} s`;
  if (seconds < 60) return `${Math.ceil(seconds / 5) * 5} s`;
  return `${Math.ceil(seconds / 60)} min`;
}
