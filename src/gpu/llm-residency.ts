/**
 * What the GPU scheduler needs from the LLM side: take every model out of VRAM (and
 * prove it), and put the configured LLM back. src/llm's OllamaResidency implements
 * it; the scheduler is the only caller.
 */

export interface UnloadReport {
  /** False when Ollama could not be reached: nothing to unload, diffusion may go on. */
  reachable: boolean;
  /** Models that were resident and are now confirmed gone from /api/ps. */
  unloaded: string[];
  durationMs: number;
  /** Free VRAM after the unload, when nvidia-smi is available. */
  freeVramMiB?: number | undefined;
}

export interface ReloadReport {
  reachable: boolean;
  model: string;
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
  /** Loads the configured LLM with the same options chat calls use. */
  reload(signal?: AbortSignal): Promise<ReloadReport>;
}
