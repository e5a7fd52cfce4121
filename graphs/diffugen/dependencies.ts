import type { Runtime } from "@langchain/langgraph";
import { loadConfig, type Config } from "../../src/config/index.js";
import type { PreviewMode } from "../../src/diffusion/index.js";
import { acquireGpuOwnerLock, GpuScheduler } from "../../src/gpu/index.js";
import { OllamaControl, PromptRefiner } from "../../src/llm/index.js";
import { createLogger, gpuSchedulerLog } from "../../src/logging/index.js";
import { ModelRegistry } from "../../src/models/index.js";

/**
 * The long-lived capabilities the graph's nodes call. They are not part of the state (not
 * serialisable, not per run): a caller passes them as LangGraph's run `context`, and a
 * run without one (LangGraph Studio) uses the process-wide set built from the environment.
 */
export interface DiffugenDeps {
  config: Config;
  registry: ModelRegistry;
  /** The one owner of the GPU: nodes ask it for phases, never load or unload themselves. */
  scheduler: GpuScheduler;
  refiner: PromptRefiner;
  /** Preview mode asked of sd-cli for live previews (`proj` is nearly free). */
  preview?: PreviewMode | undefined;
  /** Extra environment for sd-cli (CUDA_VISIBLE_DEVICES, a test double's knobs). */
  sdEnv?: Record<string, string | undefined> | undefined;
}

export interface DiffugenContext {
  deps?: DiffugenDeps | undefined;
}

/** Builds every capability from one validated configuration. */
export function createDiffugenDeps(config: Config, overrides: Partial<DiffugenDeps> = {}): DiffugenDeps {
  const registry =
    overrides.registry ??
    new ModelRegistry({
      modelsDir: config.sd.modelsDir,
      defaultModel: config.sd.defaultModel,
      modelsConfig: config.sd.modelsConfig,
    });
  const scheduler =
    overrides.scheduler ??
    new GpuScheduler({
      llm: new OllamaControl(config.llm),
      maxQueue: config.gpu.maxQueue,
      maxBatch: config.gpu.maxBatch,
      log: gpuSchedulerLog(createLogger({ level: config.logLevel })),
    });
  const refiner = overrides.refiner ?? new PromptRefiner(config.llm);
  return { preview: "proj", ...overrides, config, registry, scheduler, refiner };
}

/**
 * Kept on globalThis, not in a module variable: a dev server that loads the graph and the
 * HTTP app through different module instances (hot reload) must still see one set, and
 * so one GPU scheduler, per process.
 */
const processKey = Symbol.for("diffugen.process-wide-deps");
const processSlot = globalThis as unknown as { [processKey]?: DiffugenDeps };

/**
 * The capabilities of a process that drives the GPU for real: it first becomes the GPU's
 * one owner (src/gpu/gpu-owner-lock.ts), so a second DiffuGen process on the same box is
 * refused instead of breaking the VRAM invariant.
 */
export function createOwnedDeps(config: Config, role: string): DiffugenDeps {
  acquireGpuOwnerLock(config.dataDir, role);
  return createDiffugenDeps(config);
}

/**
 * The process-wide capabilities, built from the environment on first use. Every entry
 * point in one process (the HTTP server, the graph as LangGraph Studio runs it) shares
 * this one set, so one process has exactly one GPU scheduler.
 */
export function processWideDeps(role?: string): DiffugenDeps {
  processSlot[processKey] ??= createOwnedDeps(loadConfig(), role ?? describeProcess());
  return processSlot[processKey];
}

/** Lets an entry point install the set it built (with its own config) as the process-wide one. */
export function setProcessWideDeps(deps: DiffugenDeps): void {
  processSlot[processKey] = deps;
}

function describeProcess(): string {
  return process.argv.slice(1, 3).map((a) => a.split("/").slice(-2).join("/")).join(" ") || "node";
}

export function depsOf(runtime: Pick<Runtime<DiffugenContext>, "context">): DiffugenDeps {
  return runtime.context?.deps ?? processWideDeps();
}
