import type { Config } from "../../src/config/index.js";
import { SdBackends, type PreviewMode } from "../../src/diffusion/index.js";
import { GpuScheduler } from "../../src/gpu/index.js";
import { ChatReplier, OllamaResidency, pinoLlmLogger, PromptRefiner } from "../../src/llm/index.js";
import { createLogger, gpuSchedulerLog, sdBackendLog, type DestinationStream } from "../../src/logging/index.js";
import { ModelRegistry } from "../../src/models/index.js";

/**
 * The long-lived capabilities the graph's nodes call. They are not part of the state (not
 * serialisable, not per run). One bootstrap (src/bootstrap) builds them for each entry
 * point; every run gets them in its run context (run-context.ts).
 */
export interface DiffugenDeps {
  config: Config;
  registry: ModelRegistry;
  /** The one owner of the GPU: nodes ask it for phases, never load or unload themselves. */
  scheduler: GpuScheduler;
  /** sd-cli or the burst's sd-server (SD_BACKEND): what draws. The scheduler releases it at a burst's end. */
  backends: SdBackends;
  refiner: PromptRefiner;
  /** Writes a reply in words, streamed (a chat turn that asked for no picture, a client's background task). */
  replier: ChatReplier;
  /** Preview mode asked of sd-cli for live previews (`proj` is nearly free). */
  preview?: PreviewMode | undefined;
  /** Extra environment for sd-cli (CUDA_VISIBLE_DEVICES, a test double's knobs). */
  sdEnv?: Record<string, string | undefined> | undefined;
}

export interface DiffugenDepsOptions {
  /** Where the JSON log goes (default: stderr). `diffugen generate` passes a file: its terminal shows progress. */
  logDestination?: DestinationStream | undefined;
}

/** Builds every capability from one validated configuration. */
export function createDiffugenDeps(config: Config, overrides: Partial<DiffugenDeps> = {}, options: DiffugenDepsOptions = {}): DiffugenDeps {
  const registry =
    overrides.registry ??
    new ModelRegistry({
      modelsDir: config.sd.modelsDir,
      defaultModel: config.sd.defaultModel,
      modelsConfig: config.sd.modelsConfig,
    });
  // One JSON log (stderr unless told otherwise, LOG_LEVEL) for the swaps and the LLM side's warnings.
  const logger = createLogger({ level: config.logLevel, destination: options.logDestination });
  const backends = overrides.backends ?? new SdBackends(config.sd, { log: sdBackendLog(logger) });
  const scheduler =
    overrides.scheduler ??
    new GpuScheduler({
      llm: new OllamaResidency(config.llm, { logger: pinoLlmLogger(logger) }),
      diffusion: backends,
      maxQueue: config.gpu.maxQueue,
      maxBatch: config.gpu.maxBatch,
      log: gpuSchedulerLog(logger),
    });
  const refiner = overrides.refiner ?? new PromptRefiner(config.llm, { logger: pinoLlmLogger(logger) });
  const replier = overrides.replier ?? new ChatReplier(config.llm, { logger: pinoLlmLogger(logger) });
  return { preview: "proj", ...overrides, config, registry, scheduler, backends, refiner, replier };
}
