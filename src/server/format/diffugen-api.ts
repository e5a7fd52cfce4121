import type { GenerationParams } from "../../diffusion/index.js";
import type { Phase, ProgressEvent } from "../../events/progress-event.js";
import { imageMarkdown } from "./chat-completions.js";

/**
 * ProgressEvent → the original DiffuGen API (REFERENCE.md §5). Its clients know seven
 * phases with fixed bands; ours are finer, so each maps into one of theirs:
 *
 *   ours                                   theirs
 *   queued, refining          0-10    →    initializing     0-5
 *   unloading_llm            10-15    →    loading_model    5-10
 *   loading_model            15-20    →    loading_model   10-15, then preparing 15-20
 *   sampling                 20-90    →    generating      20-90
 *   decoding, saving, reloading 90-100 →   post_processing 90-99 (100 is `complete`)
 *   complete / error                  →    complete 100 / error
 */

export type SeedPhase = "initializing" | "loading_model" | "preparing" | "generating" | "post_processing" | "complete" | "error";

export interface SeedProgress {
  phase: SeedPhase;
  progress: number;
  message: string;
  step: number | null;
  total_steps: number | null;
  eta_seconds: number | null;
  timestamp: string;
}

const clamp01 = (x: number) => Math.min(1, Math.max(0, x));
const round1 = (x: number) => Math.round(x * 10) / 10;

export function seedPhaseAndProgress(phase: Phase, progress: number): { phase: SeedPhase; progress: number } {
  switch (phase) {
    case "queued":
    case "refining":
      return { phase: "initializing", progress: round1(5 * clamp01(progress / 10)) };
    case "unloading_llm":
      return { phase: "loading_model", progress: round1(5 + 5 * clamp01((progress - 10) / 5)) };
    case "loading_model": {
      const mapped = round1(10 + 10 * clamp01((progress - 15) / 5));
      return { phase: mapped < 15 ? "loading_model" : "preparing", progress: mapped };
    }
    case "sampling":
      return { phase: "generating", progress: round1(20 + 70 * clamp01((progress - 20) / 70)) };
    case "decoding":
    case "saving":
    case "reloading_llm":
      return { phase: "post_processing", progress: round1(90 + 9 * clamp01((progress - 90) / 10)) };
    case "complete":
      return { phase: "complete", progress: 100 };
    case "error":
      return { phase: "error", progress: 100 };
  }
}

/** The seed API's progress event for ours (previews are not part of its protocol). */
export function formatSeedProgress(event: ProgressEvent): SeedProgress | undefined {
  if (event.kind === "preview") return undefined;
  const mapped = seedPhaseAndProgress(event.phase, event.progress);
  const step = event.kind === "status" ? event.step : undefined;
  return {
    ...mapped,
    message: event.message,
    step: step?.current ?? null,
    total_steps: step?.total ?? null,
    eta_seconds: step?.etaSeconds ?? null,
    timestamp: new Date(event.at).toISOString(),
  };
}

export interface SeedImage {
  path: string;
  url: string;
  seed: number;
}

export interface SeedResult {
  success: true;
  error: null;
  image_path: string;
  image_url: string;
  markdown_response: string;
  model: string;
  prompt: string;
  parameters: Record<string, unknown>;
  /** Extras: the user's own words, and every image of a batch. */
  original_prompt: string;
  images: { image_path: string; image_url: string; seed: number }[];
  warnings: string[];
}

export function formatSeedResult(input: {
  images: SeedImage[];
  model: string;
  prompt: string;
  originalPrompt: string;
  params: GenerationParams;
  warnings: string[];
}): SeedResult {
  const { images, model, prompt, params } = input;
  const first = images[0]!;
  const markdown = [
    "Here's the image you requested:",
    "",
    ...images.map((image) => imageMarkdown(prompt, image.url)),
    "",
    "**Generation Details:**",
    `- Model: ${model}`,
    `- Prompt: ${prompt}`,
    `- Resolution: ${params.width}x${params.height} pixels`,
    `- Steps: ${params.steps}`,
    `- CFG Scale: ${params.cfgScale}`,
    `- Sampling Method: ${params.samplingMethod}`,
    `- Seed: ${first.seed}`,
  ].join("\n");
  return {
    success: true,
    error: null,
    image_path: first.path,
    image_url: first.url,
    markdown_response: markdown,
    model,
    prompt,
    parameters: {
      width: params.width,
      height: params.height,
      steps: params.steps,
      cfg_scale: params.cfgScale,
      seed: first.seed,
      sampling_method: params.samplingMethod,
      negative_prompt: params.negativePrompt,
      ...(params.scheduler === undefined ? {} : { scheduler: params.scheduler }),
    },
    original_prompt: input.originalPrompt,
    images: images.map((image) => ({ image_path: image.path, image_url: image.url, seed: image.seed })),
    warnings: input.warnings,
  };
}
