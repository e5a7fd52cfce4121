/**
 * VRAM_POLICY=fit: whether a diffusion job can run beside the LLM instead of moving it
 * out of VRAM. The scheduler asks; src/gpu/vram-ledger.ts answers from measurements
 * (nvidia-smi or rocm-smi, Ollama's /api/ps size_vram, the job's learned or estimated
 * need). Without an advisor (VRAM_POLICY=swap, or no memory tool) every diffusion job
 * swaps, as DiffuGen always did.
 */

/** What a diffusion job needs, as the caller knows it. */
export interface VramNeed {
  /** model|WxH|batch|backend: what the ledger learns a peak for. */
  key: string;
  /** MiB the job is expected to hold at its peak. */
  mib: number;
  /** True while the need is an estimate (no run of this shape measured yet). */
  estimated: boolean;
  /** Registry name of the model (for messages). */
  model: string;
}

export interface FitDecision {
  fits: boolean;
  /** For the job's events: "fits beside qwen2.5:3b (5.1 of 12 GB)" or why not. */
  message: string;
  totalMiB?: number | undefined;
  freeMiB?: number | undefined;
  needMiB?: number | undefined;
  /** The LLMs resident when it was decided (they may keep serving while the job runs). */
  models: string[];
}

export interface FitAdvisor {
  check(need: VramNeed | undefined, signal?: AbortSignal): Promise<FitDecision>;
}
