/**
 * What the GPU scheduler needs from the LLM side: take every model out of VRAM (and
 * prove it), and put the LLM back (what "back" means is the residency's policy:
 * LLM_RESTORE). src/llm's OllamaResidency implements it; the scheduler is the only caller.
 */

export interface UnloadReport {
  /** False when Ollama could not be reached: nothing to unload, diffusion may go on. */
  reachable: boolean;
  /** Models that were resident and are now confirmed gone from /api/ps. */
  unloaded: string[];
  durationMs: number;
  /** Free VRAM after the unload, when nvidia-smi is available. */
  freeVramMiB?: number | undefined;
  /**
   * Diffusion goes on, but the client should hear why (Ollama broke off the unload and
   * nvidia-smi showed no process in VRAM): the scheduler passes it on with `llm_unloaded`.
   */
  warning?: string | undefined;
}

export interface ReloadReport {
  reachable: boolean;
  /**
   * The main model: the configured LLM when it was (meant to be) loaded back, else the
   * last model loaded back; the configured LLM when nothing was to be loaded.
   */
  model: string;
  /**
   * Every model resident again, in the order they were loaded; empty when nothing was to be.
   * OllamaResidency always sets it (optional only for residencies written before it).
   */
  models?: string[] | undefined;
  /** Models that could not be loaded back (each tried once); the others were loaded all the same. */
  failed?: { model: string; error: string }[] | undefined;
  durationMs: number;
  /** size_vram == size in /api/ps; false means Ollama put part of it on the CPU. */
  fullyOnGpu?: boolean | undefined;
  warning?: string | undefined;
}

export interface LlmResidency {
  /**
   * Unloads every resident model and resolves only once /api/ps lists none of them.
   * Rejects with a typed error when a model will not leave within the timeout.
   */
  unloadAll(signal?: AbortSignal): Promise<UnloadReport>;
  /**
   * Puts back what should be in VRAM after diffusion: the models resident before the
   * unload, or the configured LLM with the same options chat calls use, or nothing.
   * Resolving with `reachable: true` means the LLM side is ready for calls (an LLM lease
   * may be granted), even when nothing was loaded: Ollama loads on demand.
   */
  reload(signal?: AbortSignal): Promise<ReloadReport>;
}
