/**
 * The one way tests and benches build DiffuGen against the test doubles (DESIGN.md, "Test
 * doubles"): a temp box (MODELS_DIR with the empty weight files the registry needs,
 * OUTPUT_DIR, DATA_DIR, and one simulated GPU dir), the fake Ollama holding the LLM on that
 * GPU, the sd-cli double pointed at the same GPU, and the product built from that box's
 * config by `bootstrap()`, exactly as `diffugen serve` builds it. Optionally the HTTP server
 * on 127.0.0.1, port 0.
 *
 * The capabilities given to bootstrap instead of the ones it would build are only what a
 * test must tune: the LLM residency's /api/ps poll (and no nvidia-smi), loggers that keep
 * their lines here instead of printing, the sd-cli double's knobs (FAKE_GPU_DIR,
 * FAKE_SD_STEP_MS...), and whatever `deps` a test passes (a refiner double).
 *
 *   const stack = await startStack({ sdEnv: { FAKE_SD_STEP_MS: "5" } });
 *   const job = stack.runner.start(stack.runner.prepare({ mode: "image", request: { prompt: "a fox" } }));
 *   await job.finished;
 *   await stack.close();   // server, jobs, scheduler, GPU lock, stray sd-cli doubles, fake Ollama, temp dirs
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { DiffugenDeps } from "../../graphs/diffugen/dependencies.js";
import { bootstrap, type Bootstrapped, type Role } from "../../src/bootstrap/index.js";
import { loadConfig, type Config } from "../../src/config/index.js";
import { processVramReader, vramLedgerFor } from "../../graphs/diffugen/dependencies.js";
import { SdBackends, VramNeeds } from "../../src/diffusion/index.js";
import { GpuScheduler } from "../../src/gpu/index.js";
import type { JobRunner } from "../../src/jobs/index.js";
import { OllamaResidency, PromptRefiner, type LlmLogger, type OllamaResidencyOptions } from "../../src/llm/index.js";
import { startServer, type RunningServer, type StartServerOptions } from "../../src/server/index.js";
import { installNvidiaSmi, isAlive, readSpawns, setCard, type CardSpec } from "../fakes/fake-gpu.mjs";
import { startFakeOllama, type FakeOllama, type FakeOllamaOptions } from "../fakes/ollama-server.js";
import { sleep, withTimeout } from "./timing.js";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
/** The executable sd-cli double. */
export const sdCliDouble = path.join(repoRoot, "tests/fakes/sd-cli.mjs");
/** The LLM the fake Ollama has installed and loaded. */
export const LLM_MODEL = "qwen2.5:3b";
/** The file the built-in `sd15` entry needs in MODELS_DIR (the double ignores its content). */
export const SD15_FILE = "v1-5-pruned-emaonly.safetensors";

/** Short phases for the sd-cli double besides its steps (a run is ~process start + steps × FAKE_SD_STEP_MS). */
export const FAST_SD_ENV: Readonly<Record<string, string>> = {
  FAKE_SD_LOAD_MS: "3",
  FAKE_SD_DECODE_MS: "3",
  FAKE_SD_COND_MS: "2",
  FAKE_SD_PREVIEW_GAP_MS: "0",
};

/**
 * `test` (default): short LLM timeouts (UNLOAD_TIMEOUT_S=2, REFINE_TIMEOUT_S=3) and a fast
 * /api/ps back-off (10 ms doubling to 50 ms, after the product's 3 ms polls of the first
 * half second). `product`: the product's own timeouts and poll (src/llm/unload-poll.ts), for
 * what measures or depends on them (benches, the invariant).
 */
export type StackTiming = "test" | "product";

export interface StackOptions {
  /** The fake Ollama (default: the LLM installed and resident, on this box's GPU). */
  ollama?: Omit<FakeOllamaOptions, "gpuDir"> | undefined;
  /** Service variables on top of the box's (UNLOAD_TIMEOUT_S, MAX_QUEUE, SD_CPP_BIN, LOG_LEVEL...). */
  env?: Record<string, string> | undefined;
  /** The sd-cli double's knobs on top of FAKE_GPU_DIR and FAKE_SD_STEP_MS=20. */
  sdEnv?: Record<string, string> | undefined;
  timing?: StackTiming | undefined;
  /** Stamps the log lines kept in `gpuLog`/`llmLog` (default Date.now; benches share epochNow). */
  clock?: (() => number) | undefined;
  /** Further capabilities to use instead of the ones built from the config (a refiner double). */
  deps?: Partial<DiffugenDeps> | undefined;
  /** Who owns the GPU lock (default `serve`). */
  role?: Role | undefined;
  /** Empty weight files to put in MODELS_DIR (default: sd15's). */
  modelFiles?: string[] | undefined;
  /** Prefix of the temp folder's name. */
  prefix?: string | undefined;
  /**
   * A simulated card with its memory (tests/fakes/fake-gpu.mjs): the doubles claim VRAM on
   * it, the fake nvidia-smi reports it (NVIDIA_SMI points at it), and VRAM_POLICY=fit has a
   * ledger. Absent: no memory tool, the strict "never both" GPU, every drawing swaps.
   */
  card?: CardSpec | undefined;
}

export interface StackServerOptions extends StackOptions {
  /** Starts the HTTP server (127.0.0.1:0, quiet, 5 s shutdown grace unless given here). */
  server: StartServerOptions;
}

export interface GpuLogLine {
  at: number;
  message: string;
  fields: Record<string, unknown>;
}

export interface LlmLogLine {
  at: number;
  source: "residency" | "refiner";
  level: "info" | "warn";
  message: string;
}

export interface Stack {
  /** The temp box: models/, outputs/, data/, gpu/ below it. */
  root: string;
  modelsDir: string;
  outputDir: string;
  dataDir: string;
  /** The simulated GPU the two doubles share (tests/fakes/fake-gpu.mjs). */
  gpuDir: string;
  ollama: FakeOllama;
  config: Config;
  /** What bootstrap built: deps, runner, the GPU owner lock. */
  app: Bootstrapped;
  deps: DiffugenDeps;
  runner: JobRunner;
  /** The HTTP server, when asked for. */
  server: RunningServer | undefined;
  url: string | undefined;
  /** Every GPU scheduler log line since the start. */
  gpuLog: GpuLogLine[];
  /** OllamaResidency's and PromptRefiner's log lines. */
  llmLog: LlmLogLine[];
  /**
   * Ends everything this stack started, each by its handle: the server (graceful, its jobs
   * cancelled after the grace), jobs still running, the GPU scheduler (the LLM put back),
   * the GPU lock, every sd-cli double still alive (by pid), the fake Ollama; removes the
   * temp box. Idempotent.
   */
  close(): Promise<void>;
}

export interface ServedStack extends Stack {
  server: RunningServer;
  url: string;
}

export function startStack(options: StackServerOptions): Promise<ServedStack>;
export function startStack(options?: StackOptions): Promise<Stack>;
export async function startStack(options: StackOptions & { server?: StartServerOptions } = {}): Promise<Stack> {
  const timing = options.timing ?? "test";
  const clock = options.clock ?? Date.now;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), options.prefix ?? "diffugen-stack-"));
  const modelsDir = path.join(root, "models");
  const outputDir = path.join(root, "outputs");
  const dataDir = path.join(root, "data");
  const gpuDir = path.join(root, "gpu");
  for (const dir of [modelsDir, outputDir, gpuDir]) fs.mkdirSync(dir, { recursive: true });
  for (const file of options.modelFiles ?? [SD15_FILE]) fs.writeFileSync(path.join(modelsDir, file), "");

  // Everything started so far, undone in reverse order if a later step fails (or on close).
  const undo: (() => Promise<void> | void)[] = [() => fs.rmSync(root, { recursive: true, force: true })];
  const unwind = async () => {
    for (const step of undo.splice(0).reverse()) {
      try {
        await step();
      } catch (err) {
        process.stderr.write(`stack: cleanup step failed: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    }
  };

  try {
    // The card comes first: a model the fake Ollama preloads claims its memory on it.
    if (options.card) setCard(gpuDir, options.card);
    const cardEnv: Record<string, string> = options.card ? { NVIDIA_SMI: installNvidiaSmi(gpuDir) } : {};
    const ollama = await startFakeOllama({ installed: [LLM_MODEL], resident: [LLM_MODEL], ...options.ollama, gpuDir });
    undo.push(() => ollama.close());
    // Whatever a failed test left running ends here, by pid (after the server and the jobs had their chance).
    undo.push(async () => {
      await killStrayDoubles(gpuDir);
    });

    const config = loadConfig({
      SD_CPP_BIN: sdCliDouble,
      MODELS_DIR: modelsDir,
      OUTPUT_DIR: outputDir,
      DATA_DIR: dataDir,
      OLLAMA_BASE_URL: ollama.url,
      LLM_MODEL,
      DEFAULT_IMAGE_MODEL: "sd15",
      LOG_LEVEL: "silent",
      ...(timing === "test" ? { UNLOAD_TIMEOUT_S: "2", REFINE_TIMEOUT_S: "3" } : {}),
      ...cardEnv,
      ...options.env,
    });

    const gpuLog: GpuLogLine[] = [];
    const llmLog: LlmLogLine[] = [];
    const llmLogger = (source: LlmLogLine["source"]): LlmLogger => ({
      info: (message) => llmLog.push({ at: clock(), source, level: "info", message }),
      warn: (message) => llmLog.push({ at: clock(), source, level: "warn", message }),
    });
    const residency: OllamaResidencyOptions = {
      logger: llmLogger("residency"),
      // No GPU here: no nvidia-smi lookup, no waiting for its free VRAM to settle.
      env: { PATH: "" },
      vramSettleMs: 0,
      ...(timing === "test" ? { pollInitialMs: 10, pollMaxMs: 50 } : {}),
    };
    // sd-server starts and stops are logged beside the swaps: one timeline of the GPU.
    const vramNeeds = options.deps?.vramNeeds ?? new VramNeeds();
    const vram = vramLedgerFor(config);
    const backends =
      options.deps?.backends ??
      new SdBackends(config.sd, {
        log: (message, fields) => gpuLog.push({ at: clock(), message, fields }),
        needs: vramNeeds,
        processVramMiB: processVramReader(config),
      });
    const app = bootstrap(config, options.role ?? "serve", {
      deps: {
        // What createDiffugenDeps builds, with the residency and the logs tuned as above.
        backends,
        vramNeeds,
        vram,
        scheduler: new GpuScheduler({
          llm: new OllamaResidency(config.llm, residency),
          diffusion: backends,
          fit: vram,
          maxQueue: config.gpu.maxQueue,
          maxBatch: config.gpu.maxBatch,
          log: (message, fields) => gpuLog.push({ at: clock(), message, fields }),
        }),
        refiner: new PromptRefiner(config.llm, { logger: llmLogger("refiner") }),
        sdEnv: { FAKE_GPU_DIR: gpuDir, FAKE_SD_STEP_MS: "20", ...options.sdEnv },
        ...options.deps,
      },
    });
    undo.push(async () => {
      // Jobs a test left running are cancelled (sd-cli killed, the GPU given back) first.
      app.runner.close();
      app.runner.cancelAll("the test stack is closing");
      await withTimeout(app.runner.whenIdle(), 15_000, "the jobs to end").catch(report);
      await withTimeout(app.close(), 15_000, "bootstrap's close (the LLM back in VRAM)");
    });

    let server: RunningServer | undefined;
    if (options.server) {
      server = await startServer(app.runner, {
        port: 0,
        host: "127.0.0.1",
        gate: app.gate,
        log: () => undefined,
        shutdownGraceMs: 5_000,
        ...options.server,
      });
      const running = server;
      undo.push(() => withTimeout(running.close(), 30_000, "the server's close"));
    }

    let closing: Promise<void> | undefined;
    return {
      root,
      modelsDir,
      outputDir,
      dataDir,
      gpuDir,
      ollama,
      config,
      app,
      deps: app.deps,
      runner: app.runner,
      server,
      url: server?.url,
      gpuLog,
      llmLog,
      close: () => (closing ??= unwind()),
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}

function report(err: unknown): void {
  process.stderr.write(`stack: ${err instanceof Error ? err.message : String(err)}\n`);
}

/** sd-cli doubles spawned on this GPU that are still running. */
export function aliveDoubles(gpuDir: string): number[] {
  return readSpawns(gpuDir)
    .map((s) => s.pid)
    .filter(isAlive);
}

/** SIGKILLs every sd-cli double recorded in `gpuDir` that is still alive; resolves once they are gone. */
export async function killStrayDoubles(gpuDir: string): Promise<number[]> {
  const stray = aliveDoubles(gpuDir);
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
