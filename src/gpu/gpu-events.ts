/**
 * What a job hears from the GPU scheduler while it waits for, holds, or gives back the
 * GPU. The jobs layer turns these into the product's progress events ("queued, 2 ahead",
 * "unloading the LLM", "reloading the LLM").
 */

/** `llm`: shared by any number of leases. `diffusion`: exclusive, and only with the LLM out of VRAM. */
export type GpuPhase = "llm" | "diffusion";

export type GpuEvent =
  /** Sent on enqueue and whenever the place in line changes. `position` is 1-based; `ahead` = position - 1. */
  | { type: "queued"; phase: GpuPhase; position: number; ahead: number }
  | { type: "granted"; phase: GpuPhase; waitedMs: number }
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
