/**
 * What the GPU scheduler needs from the diffusion side: when a burst of images ends,
 * whatever still holds the image model in VRAM (an sd-server kept for the burst) must be
 * gone before the LLM is asked back. src/diffusion's SdBackends implements it.
 */
export interface DiffusionResidency {
  /** Resolves once no sd.cpp process of ours holds VRAM (its exit seen). */
  release(): Promise<void>;
}
