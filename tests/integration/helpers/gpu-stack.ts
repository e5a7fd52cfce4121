/**
 * The real GPU stack wired to the test doubles, for integration tests and benches:
 * the real GpuScheduler + OllamaControl + PromptRefiner against the fake Ollama, and the
 * real generateImages spawning the sd-cli double, both sharing one simulated GPU dir.
 *
 *   const stack = await startGpuStack({ unloadLingerMs: 200 });
 *   const outcome = await runImageJob(stack, { jobId: "a", request: "draw a cat", steps: 2 });
 *   await stack.close();   // scheduler, fake Ollama, stray sd-cli doubles, temp dirs
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig, type Config } from "../../../src/config/index.js";
import { generateImages, type GenerationResult } from "../../../src/diffusion/index.js";
import type { SdEvent } from "../../../src/diffusion/index.js";
import { GpuScheduler, type GpuEvent, type GpuPhase, type ReleaseOutcome } from "../../../src/gpu/index.js";
import { OllamaControl, PromptRefiner, type LlmLogger, type RefinedPrompt } from "../../../src/llm/index.js";
import { ModelRegistry } from "../../../src/models/index.js";
import { isAlive, readSpawns, residentModels } from "../../fakes/fake-gpu.mjs";
import { startFakeOllama, type FakeOllama, type FakeOllamaOptions } from "../../fakes/ollama-server.js";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
/** The executable sd-cli double. */
export const sdCliDouble = path.join(repoRoot, "tests/fakes/sd-cli.mjs");
export const LLM_MODEL = "qwen2.5:3b";
/** The file the built-in `sd15` entry needs in MODELS_DIR (the double ignores its content). */
export const SD15_FILE = "v1-5-pruned-emaonly.safetensors";

export interface TempDirs {
  root: string;
  /** MODELS_DIR with an empty sd15 model file. */
  modelsDir: string;
  outputDir: string;
  /** The simulated GPU shared by the two doubles. */
  gpuDir: string;
  remove(): void;
}

/** A fresh temp tree: MODELS_DIR (empty model files), OUTPUT_DIR, and the simulated GPU dir. */
export function makeTempDirs(prefix = "diffugen-it-", modelFiles: string[] = [SD15_FILE]): TempDirs {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const modelsDir = path.join(root, "models");
  const outputDir = path.join(root, "outputs");
  const gpuDir = path.join(root, "gpu");
  for (const dir of [modelsDir, outputDir, gpuDir]) fs.mkdirSync(dir, { recursive: true });
  for (const file of modelFiles) fs.writeFileSync(path.join(modelsDir, file), "");
  return { root, modelsDir, outputDir, gpuDir, remove: () => fs.rmSync(root, { recursive: true, force: true }) };
}

/**
 * A Config the way the service would load it from its environment: SD_CPP_BIN is the
 * double, OLLAMA_BASE_URL the fake. `env` adds or overrides variables (UNLOAD_TIMEOUT_S...).
 */
export function integrationConfig(dirs: Pick<TempDirs, "modelsDir" | "outputDir">, ollamaUrl: string, env: Record<string, string> = {}): Config {
  return loadConfig({
    SD_CPP_BIN: sdCliDouble,
    MODELS_DIR: dirs.modelsDir,
    OUTPUT_DIR: dirs.outputDir,
    OLLAMA_BASE_URL: ollamaUrl,
    LLM_MODEL,
    DEFAULT_IMAGE_MODEL: "sd15",
    REFINE_TIMEOUT_S: "10",
    UNLOAD_TIMEOUT_S: "10",
    GENERATION_TIMEOUT_S: "60",
    ...env,
  });
}

/** Short phases for the sd-cli double (a run is ~process start + steps x FAKE_SD_STEP_MS). */
export const FAST_SD_ENV: Readonly<Record<string, string>> = {
  FAKE_SD_LOAD_MS: "3",
  FAKE_SD_DECODE_MS: "3",
  FAKE_SD_COND_MS: "2",
  FAKE_SD_PREVIEW_GAP_MS: "0",
};

export interface LogLine {
  at: number;
  source: string;
  message: string;
}

export interface GpuStack {
  dirs: TempDirs;
  ollama: FakeOllama;
  config: Config;
  registry: ModelRegistry;
  control: OllamaControl;
  refiner: PromptRefiner;
  scheduler: GpuScheduler;
  /** Scheduler and LLM log lines, for a failure report. */
  logs: LogLine[];
  /** The env for generateImages: the GPU dir, fast phases, and `extra` (step time, crash...). */
  sdEnv(extra?: Record<string, string>): Record<string, string>;
  /** Stops the scheduler, the fake, every sd-cli double still alive; removes the temp dirs. Idempotent. */
  close(): Promise<void>;
}

export interface GpuStackOptions extends Omit<FakeOllamaOptions, "gpuDir"> {
  /** Extra config variables (UNLOAD_TIMEOUT_S: "0.5"...). */
  env?: Record<string, string>;
  maxQueue?: number;
  maxBatch?: number;
  /** OllamaControl's poll backoff (defaults: the product's, 50 ms doubling to 100 ms). */
  pollInitialMs?: number;
  pollMaxMs?: number;
  /** Start with the LLM resident, as on a running box. Default true. */
  llmResident?: boolean;
}

export async function startGpuStack(options: GpuStackOptions = {}): Promise<GpuStack> {
  const { env, maxQueue, maxBatch, pollInitialMs, pollMaxMs, llmResident = true, ...fakeOptions } = options;
  const dirs = makeTempDirs();
  let ollama: FakeOllama | undefined;
  try {
    ollama = await startFakeOllama({
      installed: [LLM_MODEL],
      resident: llmResident ? [LLM_MODEL] : [],
      ...fakeOptions,
      gpuDir: dirs.gpuDir,
    });
    const config = integrationConfig(dirs, ollama.url, env);
    const logs: LogLine[] = [];
    const logger = (source: string): LlmLogger => ({
      info: (message) => logs.push({ at: Date.now(), source, message }),
      warn: (message) => logs.push({ at: Date.now(), source: `${source}:warn`, message }),
    });
    const registry = new ModelRegistry({ modelsDir: config.sd.modelsDir, defaultModel: config.sd.defaultModel });
    const control = new OllamaControl(config.llm, {
      logger: logger("control"),
      // No nvidia-smi on CI boxes, and none wanted here even where there is one.
      vramSettleMs: 0,
      env: { PATH: "" },
      ...(pollInitialMs === undefined ? {} : { pollInitialMs }),
      ...(pollMaxMs === undefined ? {} : { pollMaxMs }),
    });
    const refiner = new PromptRefiner(config.llm, { logger: logger("refiner") });
    const scheduler = new GpuScheduler({
      llm: control,
      maxQueue: maxQueue ?? config.gpu.maxQueue,
      maxBatch: maxBatch ?? config.gpu.maxBatch,
      log: (message, fields) => logs.push({ at: Date.now(), source: "gpu", message: `${message} ${JSON.stringify(fields)}` }),
    });
    const fake = ollama;
    let closing: Promise<void> | undefined;
    return {
      dirs,
      ollama: fake,
      config,
      registry,
      control,
      refiner,
      scheduler,
      logs,
      sdEnv: (extra = {}) => ({ ...FAST_SD_ENV, FAKE_GPU_DIR: dirs.gpuDir, ...extra }),
      close: () =>
        (closing ??= (async () => {
          try {
            await withTimeout(scheduler.close(), 10_000, "scheduler.close()");
          } finally {
            await fake.close();
            await killStrayDoubles(dirs.gpuDir);
            dirs.remove();
          }
        })()),
    };
  } catch (err) {
    await ollama?.close();
    dirs.remove();
    throw err;
  }
}

/** SIGKILLs every sd-cli double recorded in `gpuDir` that is still alive; resolves once they are gone. */
export async function killStrayDoubles(gpuDir: string): Promise<number[]> {
  const stray = readSpawns(gpuDir).map((s) => s.pid).filter(isAlive);
  for (const pid of stray) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  const until = Date.now() + 5_000;
  while (stray.some(isAlive) && Date.now() < until) await sleep(20);
  return stray;
}

// ------------------------------------------------------------------------------------ one job

export interface ImageJobOptions {
  jobId: string;
  /** What the user typed. */
  request: string;
  steps: number;
  /** Default 64. */
  size?: number;
  signal?: AbortSignal | undefined;
  /** Extra env for the sd-cli double (FAKE_SD_STEP_MS, FAKE_SD_CRASH_AT_STEP...). */
  sdEnv?: Record<string, string>;
  onGpuEvent?: (phase: GpuPhase, event: GpuEvent) => void;
  onSdEvent?: (event: SdEvent) => void;
  /** Called with the diffusion lease's grant time (the scheduler's clock, Date.now). */
  onDiffusionGranted?: (grantedAt: number) => void;
}

export type JobStage = "llm_acquire" | "refine" | "diffusion_acquire" | "generate";

export type ImageJobOutcome =
  | { kind: "done"; refined: RefinedPrompt; result: GenerationResult; release: ReleaseOutcome }
  | { kind: "failed"; stage: JobStage; error: unknown; refined?: RefinedPrompt; release?: ReleaseOutcome };

/**
 * One image job the way the graph runs it: LLM lease → refine → release; diffusion lease →
 * generateImages → release (awaited: it resolves once the GPU was handed on or the LLM is
 * back). Never throws: a failure is reported with the stage it happened in.
 */
export async function runImageJob(stack: GpuStack, job: ImageJobOptions): Promise<ImageJobOutcome> {
  const { scheduler, refiner, config, registry } = stack;
  const events = (phase: GpuPhase) => (job.onGpuEvent ? (e: GpuEvent) => job.onGpuEvent?.(phase, e) : undefined);

  let llmLease;
  try {
    llmLease = await scheduler.acquire("llm", { jobId: job.jobId, signal: job.signal, onEvent: events("llm") });
  } catch (error) {
    return { kind: "failed", stage: "llm_acquire", error };
  }
  let refined: RefinedPrompt;
  try {
    refined = await refiner.refine({ request: job.request, family: "sd1" }, job.signal);
  } catch (error) {
    return { kind: "failed", stage: "refine", error };
  } finally {
    await llmLease.release();
  }

  let lease;
  try {
    lease = await scheduler.acquire("diffusion", { jobId: job.jobId, signal: job.signal, onEvent: events("diffusion") });
  } catch (error) {
    return { kind: "failed", stage: "diffusion_acquire", error, refined };
  }
  job.onDiffusionGranted?.(lease.grantedAt);
  let result: GenerationResult;
  try {
    result = await generateImages(
      {
        prompt: refined.prompt,
        negativePrompt: refined.negativePrompt,
        model: "sd15",
        width: job.size ?? 64,
        height: job.size ?? 64,
        steps: job.steps,
        seed: 42,
      },
      { config, registry },
      { signal: job.signal, onEvent: job.onSdEvent, env: stack.sdEnv(job.sdEnv), outputDir: config.sd.outputDir },
    );
  } catch (error) {
    const release = await lease.release();
    return { kind: "failed", stage: "generate", error, refined, release };
  }
  const release = await lease.release();
  return { kind: "done", refined, result, release };
}

// ------------------------------------------------------------------------------------ watching the simulated GPU

export interface ResidencyChange {
  at: number;
  /** Models listed by the Ollama double after the change. */
  models: string[];
  /** Models that left (dropped from /api/ps) with this change. */
  dropped: string[];
  /** Models that appeared with this change. */
  loaded: string[];
}

export interface ResidencyWatch {
  readonly changes: readonly ResidencyChange[];
  /** Times `model` actually left the Ollama double's /api/ps (after its linger). */
  drops(model?: string): number[];
  stop(): void;
}

/**
 * Records when the Ollama double's resident models change, by watching the simulated GPU
 * file it rewrites (tests/fakes/fake-gpu.mjs, llm-resident.json, written atomically). The
 * fake does not expose when a lingering model finally dropped; this sees it within the
 * inotify latency (well under a millisecond on Linux). A slow poll backs fs.watch up.
 */
export function watchResidency(gpuDir: string, read: () => string[] = () => residentModels(gpuDir)): ResidencyWatch {
  const changes: ResidencyChange[] = [];
  let last = read();
  const check = (): void => {
    const now = read();
    if (now.length === last.length && now.every((m, i) => m === last[i])) return;
    const at = Date.now();
    changes.push({ at, models: now, dropped: last.filter((m) => !now.includes(m)), loaded: now.filter((m) => !last.includes(m)) });
    last = now;
  };
  const watcher = fs.watch(gpuDir, { persistent: false }, check);
  watcher.on("error", () => {});
  const poll = setInterval(check, 25);
  poll.unref();
  return {
    changes,
    drops: (model) => changes.filter((c) => (model === undefined ? c.dropped.length > 0 : c.dropped.includes(model))).map((c) => c.at),
    stop: () => {
      watcher.close();
      clearInterval(poll);
    },
  };
}

// ------------------------------------------------------------------------------------ small things

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Percentile (nearest rank) of `values`; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] as number;
}
