import type { Config } from "../../src/config/index.js";
import { locateExecutable } from "../../src/config/index.js";
import { SdBackends, VramNeeds, type PreviewMode } from "../../src/diffusion/index.js";
import { GpuScheduler, nvidiaSmiMemory, rocmSmiMemory, VramLedger } from "../../src/gpu/index.js";
import { ChatReplier, findNvidiaSmi, OllamaProbe, OllamaResidency, pinoLlmLogger, PromptRefiner, readComputeApps } from "../../src/llm/index.js";
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
  /** Peak VRAM per drawing shape, learned (kept in the job store) or estimated. */
  vramNeeds: VramNeeds;
  /** VRAM_POLICY=fit's ledger (the scheduler's fit advisor); undefined: every drawing swaps. */
  vram?: VramLedger | undefined;
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
  const vramNeeds = overrides.vramNeeds ?? new VramNeeds();
  const vram = "vram" in overrides ? overrides.vram : vramLedgerFor(config);
  const backends =
    overrides.backends ?? new SdBackends(config.sd, { log: sdBackendLog(logger), needs: vramNeeds, processVramMiB: processVramReader(config) });
  const scheduler =
    overrides.scheduler ??
    new GpuScheduler({
      llm: new OllamaResidency(config.llm, { logger: pinoLlmLogger(logger) }),
      diffusion: backends,
      fit: vram,
      maxQueue: config.gpu.maxQueue,
      maxBatch: config.gpu.maxBatch,
      log: gpuSchedulerLog(logger),
    });
  const refiner = overrides.refiner ?? new PromptRefiner(config.llm, { logger: pinoLlmLogger(logger) });
  const replier = overrides.replier ?? new ChatReplier(config.llm, { logger: pinoLlmLogger(logger) });
  return { preview: "proj", ...overrides, config, registry, scheduler, backends, vramNeeds, vram, refiner, replier };
}

/**
 * VRAM_POLICY=fit's ledger, or undefined for swap: VRAM_POLICY=swap, or no memory tool
 * (nvidia-smi: NVIDIA_SMI or on PATH; else rocm-smi: ROCM_SMI or on PATH). What it
 * budgets: the card's memory from that tool, the LLMs' from Ollama's /api/ps.
 */
export function vramLedgerFor(config: Config, env: NodeJS.ProcessEnv = process.env): VramLedger | undefined {
  if (config.gpu.vramPolicy === "swap") return undefined;
  const nvidiaSmi = findNvidiaSmi(config.llm.nvidiaSmi, env);
  const rocmSmi = nvidiaSmi ? undefined : (config.gpu.rocmSmi ?? locateExecutable("rocm-smi", env));
  const readMemory = nvidiaSmi ? nvidiaSmiMemory(nvidiaSmi) : rocmSmi ? rocmSmiMemory(rocmSmi) : undefined;
  if (!readMemory) return undefined;
  const probe = new OllamaProbe(config.llm, { requestTimeoutMs: 2_000 });
  return new VramLedger({
    readMemory,
    residentLlms: async (signal) => (await probe.listResident(signal)).map((m) => ({ name: m.name, vramMiB: Math.round(m.sizeVramBytes / 2 ** 20) })),
    marginMiB: config.gpu.vramMarginMiB,
  });
}

/** What one process holds on the GPU now (nvidia-smi's compute apps), to learn a drawing's peak. */
export function processVramReader(config: Config): ((pid: number) => Promise<number | undefined>) | undefined {
  const nvidiaSmi = config.gpu.vramPolicy === "swap" ? undefined : findNvidiaSmi(config.llm.nvidiaSmi);
  if (!nvidiaSmi) return undefined;
  return async (pid) => (await readComputeApps(nvidiaSmi))?.find((app) => app.pid === pid)?.usedMemoryMiB;
}
