import { statSync } from "node:fs";
import type { ModelFile } from "../models/index.js";
import type { SdBackendKind } from "./generate-images.js";
import type { GenerationParams } from "./generation-request.js";

/**
 * What a drawing holds in VRAM at its peak, per shape: (model, width×height, batch,
 * backend). Learned from the memory tool's samples of the sd process while it ran, kept
 * in the job store so it survives restarts; before a shape was measured, estimated from
 * the model files' sizes plus a compute allowance that grows with the pixel count. The
 * estimate errs high: a wrong guess costs a swap, never an image (and an out-of-memory
 * beside the LLM raises the shape's need and retries after a swap).
 */

export interface VramNeedEstimate {
  key: string;
  mib: number;
  estimated: boolean;
  model: string;
}

/** Where learned needs are kept (the job store implements it). */
export interface VramNeedStore {
  loadVramNeeds(): Record<string, number>;
  saveVramNeed(key: string, mib: number): void;
}

/** Weights are loaded as stored (f16, q8...) plus a tenth for the buffers around them. */
const weightOverhead = 1.1;
/** Compute buffers: a base and ~2 MiB per 1024 pixels per image (SD 1.5 at 512²: ~1.5 GB). */
const computeBaseMiB = 512;
const computeMiBPerKPixel = 2;
/** A learned need is raised this much above a peak that ran out of memory. */
const oomRaise = 1.25;

export function vramNeedKey(model: string, params: Pick<GenerationParams, "width" | "height" | "batchCount">, backend: SdBackendKind): string {
  return `${model}|${params.width}x${params.height}|${params.batchCount}|${backend}`;
}

/** The estimate for a shape never measured: the files on disk, and the pixels. */
export function estimateVramMiB(files: readonly ModelFile[], params: Pick<GenerationParams, "width" | "height" | "batchCount">): number {
  let bytes = 0;
  for (const file of files) {
    try {
      bytes += statSync(file.path).size;
    } catch {
      // a missing file is refused elsewhere; it weighs nothing here
    }
  }
  const weightsMiB = (bytes / 2 ** 20) * weightOverhead;
  const kPixels = (params.width * params.height * params.batchCount) / 1024;
  return Math.ceil(weightsMiB + computeBaseMiB + kPixels * computeMiBPerKPixel);
}

export class VramNeeds {
  readonly #learned = new Map<string, number>();
  #store: VramNeedStore | undefined;

  /** Loads what an earlier process learned, and keeps what this one learns. */
  attach(store: VramNeedStore): void {
    this.#store = store;
    for (const [key, mib] of Object.entries(store.loadVramNeeds())) this.#learned.set(key, mib);
  }

  need(model: string, files: readonly ModelFile[], params: GenerationParams, backend: SdBackendKind): VramNeedEstimate {
    const key = vramNeedKey(model, params, backend);
    const learned = this.#learned.get(key);
    if (learned !== undefined) return { key, mib: learned, estimated: false, model };
    return { key, mib: estimateVramMiB(files, params), estimated: true, model };
  }

  /** A measured peak of a run that succeeded: the need of its shape from now on (never lowered by a smaller reading). */
  learn(key: string, peakMiB: number): void {
    const current = this.#learned.get(key);
    if (current !== undefined && current >= peakMiB) return;
    this.#set(key, Math.ceil(peakMiB));
  }

  /** The shape ran out of memory at `triedMiB`: it needs more, so the next run swaps first. */
  raise(key: string, triedMiB: number): number {
    const raised = Math.ceil(Math.max(this.#learned.get(key) ?? 0, triedMiB) * oomRaise);
    this.#set(key, raised);
    return raised;
  }

  learnedCount(): number {
    return this.#learned.size;
  }

  #set(key: string, mib: number): void {
    this.#learned.set(key, mib);
    this.#store?.saveVramNeed(key, mib);
  }
}
