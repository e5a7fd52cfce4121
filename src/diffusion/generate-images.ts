import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Config } from "../config/index.js";
import type { ModelFile } from "../models/index.js";
import type { GenerationParams } from "./generation-request.js";
import { checkGenerationInputs } from "./generation-inputs.js";
import { batchOutputPaths, newOutputPath, previewPathFor } from "./output-paths.js";
import type { PreviewMode } from "./sampling-options.js";
import { buildSdArgs } from "./sd-args.js";
import type { SdEvent } from "./sd-events.js";
import { runSdCli, type SdImage, type SdTimings } from "./sd-runner.js";

export interface GenerateImagesOptions {
  /** SD_CPP_BIN, OUTPUT_DIR, SD_LORA_DIR, threads, extra args, the timeout. */
  sd: Config["sd"];
  /** Client gone, cancel, shutdown: ends sd-cli and rejects with SdAbortedError. */
  signal?: AbortSignal | undefined;
  onEvent?: ((event: SdEvent) => void) | undefined;
  /** Defaults to OUTPUT_DIR. */
  outputDir?: string | undefined;
  /** Goes into the output file names (outputTagFor(jobId)), so a job's files can be found. */
  outputTag?: string | undefined;
  /**
   * sd.cpp no longer holds VRAM for this job: sd-cli exited with 0, its output not checked
   * yet. Not called when it failed (the result says so, after cleaning up), nor for
   * sd-server, which keeps the model for the burst: its result is that moment.
   */
  onGpuFree?: (() => void) | undefined;
  /** Extra environment for sd-cli (CUDA_VISIBLE_DEVICES, the test double's knobs...). */
  env?: Record<string, string | undefined> | undefined;
  /** Ask sd-cli for a preview every step (emitted as `preview` events). */
  preview?: PreviewMode | undefined;
  /** Overrides GENERATION_TIMEOUT_S for this call. */
  timeoutMs?: number | undefined;
  killGraceMs?: number | undefined;
}

/** The two ways to run sd.cpp: a fresh sd-cli per image, or an sd-server kept for a burst. */
export type SdBackendKind = "cli" | "server";

export interface GenerationResult {
  /** Which program drew: a fresh sd-cli, or the sd-server kept for the burst. */
  backend: SdBackendKind;
  images: SdImage[];
  /** The exact command line: the binary and its arguments (sd-server's, for that backend). */
  argv: string[];
  seeds: number[];
  timings: SdTimings;
}

/**
 * Resolved parameters → images on disk, with the model's `files` (ModelRegistry's
 * assertFilesPresent). The parameters were checked when the request was admitted; what
 * is checked here is what lives on disk and can change meanwhile (the init image, LoRA
 * files), before anything is spawned, so a bad request costs no GPU time and leaves
 * nothing behind.
 */
export async function generateImages(
  params: GenerationParams,
  files: readonly ModelFile[],
  options: GenerateImagesOptions,
): Promise<GenerationResult> {
  const sd = options.sd;
  const loraDir = sd.loraDir;
  checkGenerationInputs(params, loraDir);

  const outputDir = path.resolve(options.outputDir ?? sd.outputDir);
  await mkdir(outputDir, { recursive: true });
  const outputPath = newOutputPath(outputDir, new Date(), options.outputTag);
  const previewPath = options.preview ? previewPathFor(outputPath) : undefined;
  const args = buildSdArgs(params, files, {
    outputPath,
    previewPath,
    previewMode: options.preview,
    threads: sd.threads,
    extraArgs: sd.extraArgs,
    loraDir,
  });

  const run = await runSdCli({
    bin: sd.bin,
    args,
    outputPaths: batchOutputPaths(outputPath, params.batchCount),
    previewPath,
    cwd: outputDir,
    env: options.env,
    timeoutMs: options.timeoutMs ?? sd.timeoutMs,
    killGraceMs: options.killGraceMs,
    signal: options.signal,
    onEvent: options.onEvent,
    onCleanExit: options.onGpuFree,
    seed: params.seed,
  });
  return {
    backend: "cli",
    images: run.images,
    argv: [sd.bin, ...args],
    seeds: run.seeds,
    timings: run.timings,
  };
}
