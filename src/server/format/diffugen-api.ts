import { phaseBands, type Phase, type ProgressEvent } from "../../events/progress-event.js";
import type { ImageLinks } from "../image-links.js";
import { imageMarkdown } from "./chat-completions.js";
import type { ImagesOutcome } from "./outcomes.js";

/**
 * ProgressEvent → the original DiffuGen API (REFERENCE.md §5). Its clients know seven
 * phases with fixed bands; ours are finer, so each maps into one of theirs (our bands as
 * phaseBands has them today; the mapping reads them from there):
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

/**
 * Where each group of our phases lands in their bands. Ours are read from phaseBands (the
 * one table), so the two cannot drift; theirs are fixed by their clients.
 */
const seedBands: { ours: readonly Phase[]; theirs: SeedPhase; to: readonly [number, number] }[] = [
  { ours: ["queued", "refining"], theirs: "initializing", to: [0, 5] },
  { ours: ["unloading_llm"], theirs: "loading_model", to: [5, 10] },
  // Model loading finishes their loading_model band, then fills `preparing`.
  { ours: ["loading_model"], theirs: "loading_model", to: [10, 20] },
  { ours: ["sampling"], theirs: "generating", to: [20, 90] },
  // Their 100 is `complete`.
  { ours: ["decoding", "saving", "reloading_llm"], theirs: "post_processing", to: [90, 99] },
];

/** Where their `preparing` band starts. */
const preparingFrom = 15;

interface SeedBand {
  theirs: SeedPhase;
  /** Our span: from the first phase's start to the last one's end. */
  from: number;
  until: number;
  to: readonly [number, number];
}

const bandOf = new Map<Phase, SeedBand>(
  seedBands.flatMap(({ ours, theirs, to }) => {
    const band: SeedBand = {
      theirs,
      from: Math.min(...ours.map((phase) => phaseBands[phase][0])),
      until: Math.max(...ours.map((phase) => phaseBands[phase][1])),
      to,
    };
    return ours.map((phase) => [phase, band] as const);
  }),
);

export function seedPhaseAndProgress(phase: Phase, progress: number): { phase: SeedPhase; progress: number } {
  if (phase === "complete" || phase === "error") return { phase, progress: 100 };
  const band = bandOf.get(phase)!;
  const [start, end] = band.to;
  const fraction = band.until > band.from ? (progress - band.from) / (band.until - band.from) : 1;
  const mapped = round1(start + (end - start) * clamp01(fraction));
  return { phase: band.theirs === "loading_model" && mapped >= preparingFrom ? "preparing" : band.theirs, progress: mapped };
}

/** The seed API's progress event for ours (previews are not part of its protocol). */
export function formatSeedProgress(event: ProgressEvent): SeedProgress | undefined {
  // Previews are not part of its protocol; the parameters come back in the result.
  if (event.kind === "preview" || event.kind === "params") return undefined;
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

/** The seed API's answer for the images: `links` for their URLs, `originalPrompt` the user's own words. */
export function formatSeedResult(outcome: ImagesOutcome, links: ImageLinks, originalPrompt: string): SeedResult {
  const { model, prompt, params } = outcome;
  const images = outcome.images.map((image) => ({ path: image.path, url: links.image(image.path), seed: image.seed }));
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
    original_prompt: originalPrompt,
    images: images.map((image) => ({ image_path: image.path, image_url: image.url, seed: image.seed })),
    warnings: outcome.warnings,
  };
}
