import type { GenerationParams, GenerationRequest } from "../../src/diffusion/index.js";

/**
 * The request that reproduces resolved parameters exactly (the seed drawn once stays the
 * seed), for checking a refined prompt and for handing the run to generateImages.
 */
export function requestFromParams(params: GenerationParams, model?: string): GenerationRequest {
  return {
    prompt: params.prompt,
    negativePrompt: params.negativePrompt,
    model,
    width: params.width,
    height: params.height,
    steps: params.steps,
    cfgScale: params.cfgScale,
    guidance: params.guidance,
    // Resolved from the same enums, so they are valid members.
    samplingMethod: params.samplingMethod as GenerationRequest["samplingMethod"],
    scheduler: params.scheduler as GenerationRequest["scheduler"],
    seed: params.seed,
    batchCount: params.batchCount,
    initImage: params.initImage,
    strength: params.strength,
    vaeTiling: params.vaeTiling,
  };
}
