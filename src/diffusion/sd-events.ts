/**
 * What an sd-cli run reports while it works, read from its own output (never a timer).
 *
 * Every event carries `phase` (one of the product's diffusion phases, so a graph maps it
 * one to one onto its single progress event) and `progress`, the run's overall progress
 * 0..1, which never goes backwards. Progress bands (what each phase covers):
 *
 *   loading_model 0.00-0.10  tensor loading bars before the first step
 *   sampling      0.10-0.90  steps done / (steps × images), batch included
 *   decoding      0.90-0.97  latents (or VAE tiles) decoded
 *   saving        0.97-1.00  images saved; 1 once sd-cli says all are saved
 *
 * sd.cpp loads tensors lazily: the diffusion model loads after "generating image 1/N"
 * and the VAE after "decoding N latents". Weight loading is `loading_model` wherever it
 * happens: the run stays in `loading_model` until the first step (so the diffusion
 * model's load has the loading band), and a later load (the VAE) is a `load_progress`
 * event of phase `loading_model` whose `progress` stays where the run is (use
 * `sdStageOf(progress)` to place it). A load bar is never a step.
 */

export const sdPhases = ["loading_model", "sampling", "decoding", "saving"] as const;
export type SdPhase = (typeof sdPhases)[number];

/** Where each phase sits in a run's own progress 0..1 (the table above). */
export const sdProgressBands: Readonly<Record<SdPhase, readonly [number, number]>> = {
  loading_model: [0, 0.1],
  sampling: [0.1, 0.9],
  decoding: [0.9, 0.97],
  saving: [0.97, 1],
};

/**
 * The phase whose band holds `progress` (the first one, at a boundary): where a run is,
 * for an event whose own phase is not where the run is (a late `loading_model` bar).
 */
export function sdStageOf(progress: number): SdPhase {
  return sdPhases.find((phase) => progress <= sdProgressBands[phase][1]) ?? "saving";
}

/** How far (0..1) an sd event is through its own phase. */
export function fractionOfPhase(event: { phase: SdPhase; progress: number }): number {
  const [from, to] = sdProgressBands[event.phase];
  return Math.min(1, Math.max(0, (event.progress - from) / (to - from)));
}

export type SdStream = "stdout" | "stderr";
export type SdLogLevel = "debug" | "info" | "warn" | "error";

interface SdEventBase {
  phase: SdPhase;
  /** Overall progress of the run, 0..1, monotonic. */
  progress: number;
}

/** The process started (emitted by the runner, before any output). */
export interface SdSpawnedEvent extends SdEventBase {
  type: "spawned";
  pid: number;
  argv: string[];
}

/**
 * The job runs on an sd-server that already holds the model (started by an earlier job of
 * the burst): no process is spawned and no weights are read.
 */
export interface SdServerReusedEvent extends SdEventBase {
  type: "server_reused";
  pid: number;
  port: number;
}

/** The run entered a new phase. The first one is `loading_model`, at sd-cli's first output. */
export interface SdPhaseEvent extends SdEventBase {
  type: "phase";
}

/**
 * A tensor-loading bar (`#` cells, MB/s or GB/s): weights being read, not a step. Its
 * phase is always `loading_model`, also in the middle of a run (see the top).
 */
export interface SdLoadProgressEvent extends SdEventBase {
  type: "load_progress";
  current: number;
  total: number;
  /** As sd-cli printed it, e.g. "1.14GB/s". */
  speed: string;
}

/** `generating image: i/N - seed S`: sampling of one image starts; `seed` is the real one. */
export interface SdSamplingStartedEvent extends SdEventBase {
  type: "sampling_started";
  /** 0-based, like the output file suffix. */
  imageIndex: number;
  imageCount: number;
  seed: number;
}

/** One sampling step finished. */
export interface SdStepEvent extends SdEventBase {
  type: "step";
  step: number;
  totalSteps: number;
  /** 0-based. */
  imageIndex: number;
  imageCount: number;
  /** The duration of this step as sd-cli printed it (it/s converted to s/it). */
  secondsPerStep: number;
  /**
   * sd.cpp times a step from the start of sampling, so the first step after a lazy weight
   * load counts the load too: its `secondsPerStep` is no step rate, and the ETA of this
   * step is only a guess from it. Displays show neither for such a step.
   */
  includesLoad: boolean;
  /**
   * Seconds of sampling left for the whole run, from the mean measured step time (steps
   * with `includesLoad` left out): the rest of this image plus every image still to come
   * (decoding not included).
   */
  etaSeconds: number;
}

/** `sampling completed, taking Xs` for one image. */
export interface SdSamplingCompletedEvent extends SdEventBase {
  type: "sampling_completed";
  imageIndex: number;
  seconds: number;
}

/** `decoding N latents`: the VAE starts turning latents into images. */
export interface SdDecodingStartedEvent extends SdEventBase {
  type: "decoding_started";
  latents: number;
}

/**
 * Decoding advanced: a VAE tile (`=` bar, only with --vae-tiling; restarts per latent)
 * or a whole latent (`latent i decoded, taking Xs`).
 */
export interface SdDecodeProgressEvent extends SdEventBase {
  type: "decode_progress";
  unit: "tile" | "latent";
  current: number;
  total: number;
  /** Only for unit "latent". */
  seconds?: number;
}

/** `save result image i to 'path' (success|failure)`. */
export interface SdImageSavedEvent extends SdEventBase {
  type: "image_saved";
  imageIndex: number;
  /** As sd-cli printed it (relative to its working directory unless we passed it absolute). */
  path: string;
  success: boolean;
}

/** `N/M images saved`: sd-cli is done. */
export interface SdImagesSavedEvent extends SdEventBase {
  type: "images_saved";
  saved: number;
  total: number;
}

/** `Version: SD 1.x` (the model architecture sd.cpp detected). */
export interface SdModelVersionEvent extends SdEventBase {
  type: "model_version";
  version: string;
}

/** `generate_image WxH`: the size sd-cli really generates (it rounds up off-grid sizes). */
export interface SdImageSizeEvent extends SdEventBase {
  type: "image_size";
  width: number;
  height: number;
}

/** A preview PNG (emitted by the runner; always a complete, valid PNG that changed). */
export interface SdPreviewEvent extends SdEventBase {
  type: "preview";
  png: Buffer;
  width: number;
  height: number;
  /** The last step seen when the preview was read. */
  step: number;
  imageIndex: number;
}

/** Any `[LEVEL] file:line - message` line (for logs and debugging views). */
export interface SdLogEvent extends SdEventBase {
  type: "log";
  level: SdLogLevel;
  /** `file.cpp:LINE`; empty for ggml lines that only carry the tag. */
  source: string;
  message: string;
  stream: SdStream;
}

export type SdEvent =
  | SdSpawnedEvent
  | SdServerReusedEvent
  | SdPhaseEvent
  | SdLoadProgressEvent
  | SdSamplingStartedEvent
  | SdStepEvent
  | SdSamplingCompletedEvent
  | SdDecodingStartedEvent
  | SdDecodeProgressEvent
  | SdImageSavedEvent
  | SdImagesSavedEvent
  | SdModelVersionEvent
  | SdImageSizeEvent
  | SdPreviewEvent
  | SdLogEvent;

export type SdEventType = SdEvent["type"];
