/**
 * The real HTTP server (startServer) in front of the real stack (JobRunner, graph, GPU
 * scheduler, OllamaControl, PromptRefiner, sd runner), wired to the doubles: the fake
 * Ollama in this process, the sd-cli double as a child process, sharing one simulated GPU.
 *
 * Unlike the tests' harnesses, OllamaControl keeps the product's /api/ps polling (50 ms
 * doubling to 100 ms): what it costs is one of the figures. nvidia-smi is hidden from it
 * (PATH empty for that lookup), as there is no GPU here.
 *
 * The scheduler's log is kept with the shared clock (stats.ts epochNow), so a bench can
 * tell when the LLM was unloaded, the GPU granted to sd-cli, and the LLM back.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createDiffugenDeps, type DiffugenDeps } from "../../graphs/diffugen/dependencies.js";
import { loadConfig } from "../../src/config/index.js";
import { GpuScheduler } from "../../src/gpu/index.js";
import { JobRunner } from "../../src/jobs/index.js";
import { OllamaControl, PromptRefiner, silentLlmLogger } from "../../src/llm/index.js";
import { startServer, type RunningServer } from "../../src/server/index.js";
import { readViolations, residentModels } from "../../tests/fakes/fake-gpu.mjs";
import { startFakeOllama, type FakeOllama, type FakeOllamaOptions } from "../../tests/fakes/ollama-server.js";
import { epochNow } from "./stats.js";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const sdCliDouble = path.join(repoRoot, "tests/fakes/sd-cli.mjs");
export const LLM_MODEL = "qwen2.5:3b";
/** The file the built-in `sd15` entry needs in MODELS_DIR (the double ignores its content). */
export const SD15_FILE = "v1-5-pruned-emaonly.safetensors";

export interface SchedulerLogLine {
  at: number;
  message: string;
  fields: Record<string, unknown>;
}

export interface BenchServer {
  url: string;
  deps: DiffugenDeps;
  runner: JobRunner;
  server: RunningServer;
  ollama: FakeOllama;
  gpuDir: string;
  root: string;
  /** Every scheduler log line since start (or the last clearLog), on the epochNow clock. */
  log: SchedulerLogLine[];
  /** Times (epochNow) when the LLM actually left the fake's /api/ps, after its linger. */
  drops: number[];
  /** The previous run fully over: the LLM back and every graph run ended. */
  settle(): Promise<void>;
  violations(): number;
  close(): Promise<void>;
}

export interface BenchServerOptions {
  ollama?: FakeOllamaOptions;
  /** sd-cli double knobs (FAKE_SD_*). */
  sdEnv?: Record<string, string>;
  /** Extra service variables (MAX_QUEUE...). */
  env?: Record<string, string>;
  apiKey?: string;
}

export async function startBenchServer(options: BenchServerOptions = {}): Promise<BenchServer> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-bench-"));
  const modelsDir = path.join(root, "models");
  const outputDir = path.join(root, "outputs");
  const gpuDir = path.join(root, "gpu");
  for (const dir of [modelsDir, outputDir, gpuDir]) fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(modelsDir, SD15_FILE), "");

  const ollama = await startFakeOllama({ installed: [LLM_MODEL], resident: [LLM_MODEL], gpuDir, ...options.ollama });
  const config = loadConfig({
    SD_CPP_BIN: sdCliDouble,
    MODELS_DIR: modelsDir,
    OUTPUT_DIR: outputDir,
    DATA_DIR: path.join(root, "data"),
    OLLAMA_BASE_URL: ollama.url,
    LLM_MODEL,
    DEFAULT_IMAGE_MODEL: "sd15",
    MAX_QUEUE: "64",
    LOG_LEVEL: "warn",
    ...options.env,
  });
  const log: SchedulerLogLine[] = [];
  const scheduler = new GpuScheduler({
    llm: new OllamaControl(config.llm, { logger: silentLlmLogger, env: { PATH: "" } }),
    maxQueue: config.gpu.maxQueue,
    maxBatch: config.gpu.maxBatch,
    log: (message, fields) => log.push({ at: epochNow(), message, fields }),
  });
  const deps = createDiffugenDeps(config, {
    scheduler,
    refiner: new PromptRefiner(config.llm, { logger: silentLlmLogger }),
    sdEnv: { FAKE_GPU_DIR: gpuDir, ...options.sdEnv },
  });
  const runner = new JobRunner(deps);
  const drops: number[] = [];
  const watch = watchDrops(gpuDir, drops);
  let server: RunningServer;
  try {
    server = await startServer(deps, {
      runner,
      port: 0,
      host: "127.0.0.1",
      apiKey: options.apiKey,
      log: (message) => process.stderr.write(`server: ${message}\n`),
      shutdownGraceMs: 5_000,
    });
  } catch (err) {
    watch.close();
    await scheduler.close();
    await ollama.close();
    fs.rmSync(root, { recursive: true, force: true });
    throw err;
  }
  return {
    url: server.url,
    deps,
    runner,
    server,
    ollama,
    gpuDir,
    root,
    log,
    drops,
    async settle() {
      await scheduler.whenSettled();
      await runner.whenIdle();
    },
    violations: () => readViolations(gpuDir).length,
    async close() {
      watch.close();
      await server.close();
      await scheduler.close();
      await ollama.close();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

/**
 * The fake rewrites the simulated GPU's resident list when a model really leaves /api/ps
 * (after its linger); inotify tells us within a fraction of a millisecond.
 */
export function watchDrops(gpuDir: string, drops: number[]): { close(): void } {
  let last = residentModels(gpuDir);
  const check = () => {
    const now = residentModels(gpuDir);
    if (last.some((m) => !now.includes(m))) drops.push(epochNow());
    last = now;
  };
  const watcher = fs.watch(gpuDir, { persistent: false }, check);
  watcher.on("error", () => {});
  return { close: () => watcher.close() };
}

/** Times (epochNow) of the scheduler's log lines with this message, from `since` on. */
export function logTimes(log: readonly SchedulerLogLine[], message: string, since = 0): number[] {
  return log.filter((l) => l.message === message && l.at >= since).map((l) => l.at);
}
