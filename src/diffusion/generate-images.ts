import { existsSync, statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Config } from "../config/index.js";
import type { ModelRegistry } from "../models/index.js";
import { InvalidGenerationParamsError } from "./errors.js";
import {
  resolveGenerationParams,
  type GenerationParams,
  type GenerationRequest,
  type ResolveOptions,
} from "./generation-request.js";
import { loraFileExtensions } from "./lora-tags.js";
import { batchOutputPaths, newOutputPath, previewPathFor } from "./output-paths.js";
import type { PreviewMode } from "./sampling-options.js";
import { buildSdArgs } from "./sd-args.js";
import type { SdEvent } from "./sd-events.js";
import { runSdCli, type SdImage, type SdTimings } from "./sd-runner.js";

export interface GenerateImagesDeps {
  config: Pick<Config, "sd">;
  registry: ModelRegistry;
}

export interface GenerateImagesOptions {
  /** Client gone, cancel, shutdown: ends sd-cli and rejects with SdAbortedError. */
  signal?: AbortSignal | undefined;
  onEvent?: ((event: SdEvent) => void) | undefined;
  /** Defaults to OUTPUT_DIR. */
  outputDir?: string | undefined;
  /** Goes into the output file names (outputTagFor(jobId)), so a job's files can be found. */
  outputTag?: string | undefined;
  /** Extra environment for sd-cli (CUDA_VISIBLE_DEVICES, the test double's knobs...). */
  env?: Record<string, string | undefined> | undefined;
  /** Ask sd-cli for a preview every step (emitted as `preview` events). */
  preview?: PreviewMode | undefined;
  /** Overrides GENERATION_TIMEOUT_S for this call. */
  timeoutMs?: number | undefined;
  killGraceMs?: number | undefined;
  randomSeed?: ResolveOptions["randomSeed"];
}

export interface GenerationResult {
  images: SdImage[];
  /** The registry name of the model used (not the alias asked for). */
  model: string;
  /** Every value the generation used, the real seed included. */
  params: GenerationParams;
  /** The exact command line: the binary and its arguments. */
  argv: string[];
  seeds: number[];
  timings: SdTimings;
}

/**
 * One request → images on disk. Everything that can be checked is checked before
 * anything is spawned (the request, the model, its files, the init image, LoRAs), so a
 * bad request costs no GPU time and leaves nothing behind.
 */
export async function generateImages(
  request: GenerationRequest,
  deps: GenerateImagesDeps,
  options: GenerateImagesOptions = {},
): Promise<GenerationResult> {
  const { config, registry } = deps;
  const entry = registry.resolve(requestedModel(request));
  const params = resolveGenerationParams(request, entry, { randomSeed: options.randomSeed });
  const files = registry.assertFilesPresent(entry);
  if (params.initImage !== undefined && !isFile(params.initImage)) {
    throw new InvalidGenerationParamsError("initImage", `init image not found: ${params.initImage}`);
  }
  const loraDir = config.sd.loraDir;
  if (params.loras.length > 0 && loraDir) {
    for (const lora of params.loras) {
      if (!loraFileExtensions.some((ext) => isFile(path.join(loraDir, lora.name + ext)))) {
        throw new InvalidGenerationParamsError("prompt", `LoRA '${lora.name}' not found in ${loraDir}`);
      }
    }
  }

  const outputDir = path.resolve(options.outputDir ?? config.sd.outputDir);
  await mkdir(outputDir, { recursive: true });
  const outputPath = newOutputPath(outputDir, new Date(), options.outputTag);
  const previewPath = options.preview ? previewPathFor(outputPath) : undefined;
  const args = buildSdArgs(params, files, {
    outputPath,
    previewPath,
    previewMode: options.preview,
    threads: config.sd.threads,
    extraArgs: config.sd.extraArgs,
    loraDir,
  });

  const run = await runSdCli({
    bin: config.sd.bin,
    args,
    outputPaths: batchOutputPaths(outputPath, params.batchCount),
    previewPath,
    cwd: outputDir,
    env: options.env,
    timeoutMs: options.timeoutMs ?? config.sd.timeoutMs,
    killGraceMs: options.killGraceMs,
    signal: options.signal,
    onEvent: options.onEvent,
    seed: params.seed,
  });
  return {
    images: run.images,
    model: entry.name,
    params,
    argv: [config.sd.bin, ...args],
    seeds: run.seeds,
    timings: run.timings,
  };
}

/** The model name, read before full validation so its errors name the model first. */
function requestedModel(request: GenerationRequest): string | undefined {
  const model = (request as { model?: unknown } | null)?.model;
  if (model === undefined) return undefined;
  if (typeof model !== "string" || model.trim() === "") {
    throw new InvalidGenerationParamsError("model", "model must be a model name");
  }
  return model;
}

function isFile(file: string): boolean {
  try {
    return existsSync(file) && statSync(file).isFile();
  } catch {
    return false;
  }
}
