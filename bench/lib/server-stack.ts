/**
 * The real HTTP server (startServer) in front of the real stack (JobRunner, graph, GPU
 * scheduler, OllamaResidency, PromptRefiner, sd runner), built by bootstrap exactly as
 * `diffugen serve` builds it and wired to the doubles by tests/helpers/stack.ts: the fake
 * Ollama in this process, the sd-cli double as a child process, sharing one simulated GPU.
 *
 * Unlike the tests, it runs with the product's timing (`timing: "product"`): OllamaResidency
 * keeps the product's /api/ps polling (src/llm/unload-poll.ts), as what it costs is one of
 * the figures, and the LLM timeouts are the product's. nvidia-smi is hidden from it (PATH
 * empty for that lookup), as there is no GPU here.
 *
 * The scheduler's log is kept with the shared clock (stats.ts epochNow), so a bench can
 * tell when the LLM was unloaded, the GPU granted to sd-cli, and the LLM back.
 */
import fs from "node:fs";
import type { DiffugenDeps } from "../../graphs/diffugen/dependencies.js";
import type { JobRunner } from "../../src/jobs/index.js";
import type { RunningServer } from "../../src/server/index.js";
import { readViolations, residentModels, type CardSpec } from "../../tests/fakes/fake-gpu.mjs";
import type { FakeOllama, FakeOllamaOptions } from "../../tests/fakes/ollama-server.js";
import { startStack, type GpuLogLine } from "../../tests/helpers/stack.js";
import { epochNow } from "./stats.js";

export { LLM_MODEL, repoRoot, SD15_FILE, sdCliDouble } from "../../tests/helpers/stack.js";

export type SchedulerLogLine = GpuLogLine;

export interface BenchServer {
  url: string;
  deps: DiffugenDeps;
  runner: JobRunner;
  server: RunningServer;
  ollama: FakeOllama;
  gpuDir: string;
  root: string;
  /** Every scheduler log line since start, on the epochNow clock. */
  log: SchedulerLogLine[];
  /** Times (epochNow) when the LLM actually left the fake's /api/ps, after its linger. */
  drops: number[];
  /** The previous run fully over: the LLM back and every graph run ended. */
  settle(): Promise<void>;
  violations(): number;
  close(): Promise<void>;
}

export interface BenchServerOptions {
  ollama?: Omit<FakeOllamaOptions, "gpuDir">;
  /** sd-cli double knobs (FAKE_SD_*). */
  sdEnv?: Record<string, string>;
  /** Extra service variables (MAX_QUEUE...). */
  env?: Record<string, string>;
  apiKey?: string;
  /** A simulated card with its memory (the fake nvidia-smi reports it; VRAM_POLICY=fit has a ledger). */
  card?: CardSpec;
}

export async function startBenchServer(options: BenchServerOptions = {}): Promise<BenchServer> {
  const stack = await startStack({
    prefix: "diffugen-bench-",
    timing: "product",
    clock: epochNow,
    ollama: options.ollama,
    sdEnv: options.sdEnv,
    env: { MAX_QUEUE: "64", LOG_LEVEL: "warn", ...options.env },
    card: options.card,
    server: {
      apiKey: options.apiKey,
      log: (message) => process.stderr.write(`server: ${message}\n`),
      shutdownGraceMs: 5_000,
    },
  });
  const drops: number[] = [];
  const watch = watchDrops(stack.gpuDir, drops);
  const { deps, runner } = stack;
  return {
    url: stack.url,
    deps,
    runner,
    server: stack.server,
    ollama: stack.ollama,
    gpuDir: stack.gpuDir,
    root: stack.root,
    log: stack.gpuLog,
    drops,
    async settle() {
      await deps.scheduler.whenSettled();
      await runner.whenIdle();
    },
    violations: () => readViolations(stack.gpuDir).length,
    async close() {
      watch.close();
      await stack.close();
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
