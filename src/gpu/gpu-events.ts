/**
 * What a job hears from the GPU scheduler while it waits for, holds, or gives back the
 * GPU. The jobs layer turns these into the product's progress events ("queued, 2 ahead",
 * "unloading the LLM", "reloading the LLM").
 */

/**
 * `llm`: shared by any number of leases. `diffusion`: exclusive among diffusion jobs, and
 * only with the LLM out of VRAM, unless VRAM_POLICY=fit found it fits beside the LLM.
 */
export type GpuPhase = "llm" | "diffusion";

export type GpuEvent =
  /** Sent on enqueue and whenever the place in line changes. `position` is 1-based; `ahead` = position - 1. */
  | { type: "queued"; phase: GpuPhase; position: number; ahead: number }
  | { type: "granted"; phase: GpuPhase; waitedMs: number }
  /** VRAM_POLICY=fit: the job runs beside the resident LLM, nothing is moved out. */
  | { type: "fits_beside_llm"; message: string; models: string[]; needMiB?: number | undefined; freeMiB?: number | undefined; totalMiB?: number | undefined }
  /** VRAM_POLICY=fit: the job does not fit beside the LLM; the LLM is moved out as usual. */
  | { type: "needs_whole_gpu"; message: string }
  /** The LLM is being taken out of VRAM for this (diffusion) job. */
  | { type: "unloading_llm" }
  | {
      type: "llm_unloaded";
      durationMs: number;
      /** Models confirmed gone from Ollama's /api/ps. */
      models: string[];
      /** False when Ollama could not be reached (nothing to unload). */
      reachable: boolean;
      freeVramMiB?: number | undefined;
      /** The unload report's warning: diffusion goes on, the job should say why. */
      warning?: string | undefined;
    }
  /** A model would not leave VRAM: this job's acquire rejects with the error. */
  | { type: "llm_unload_failed"; durationMs: number; error: string }
  /** The LLM is being put back, because this job released the GPU or is waiting for the LLM. */
  | { type: "reloading_llm" }
  | {
      type: "llm_reloaded";
      durationMs: number;
      model: string;
      /** False when Ollama put part of the model on the CPU. */
      fullyOnGpu?: boolean | undefined;
      warning?: string | undefined;
    }
  | { type: "llm_reload_failed"; durationMs: number; error: string };

export type GpuEventType = GpuEvent["type"];

export type GpuEventListener = (event: GpuEvent) => void;
