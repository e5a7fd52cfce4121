import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { MemorySaver } from "@langchain/langgraph";
import { builder } from "../../graphs/diffugen.js";
import { createDiffugenDeps, type DiffugenDeps } from "../../graphs/diffugen/dependencies.js";
import type { DiffugenStateValue } from "../../graphs/diffugen/state.js";
import { loadConfig } from "../../src/config/index.js";
import type { ProgressEvent } from "../../src/events/progress-event.js";
import { silentLlmLogger, OllamaControl, PromptRefiner } from "../../src/llm/index.js";
import { GpuScheduler } from "../../src/gpu/index.js";
import { startFakeOllama, type FakeOllama, type FakeOllamaOptions } from "../fakes/ollama-server.js";

const here = path.dirname(fileURLToPath(import.meta.url));
export const sdCliDouble = path.resolve(here, "../fakes/sd-cli.mjs");

export interface Stack {
  deps: DiffugenDeps;
  ollama: FakeOllama;
  gpuDir: string;
  outputDir: string;
  root: string;
  close(): Promise<void>;
}

/**
 * The real capabilities (registry, scheduler, Ollama control plane, refiner, sd runner)
 * wired to the doubles: the fake Ollama and the fake sd-cli share one simulated GPU.
 */
export async function startStack(
  options: { ollama?: FakeOllamaOptions; env?: Record<string, string>; sdEnv?: Record<string, string> } = {},
): Promise<Stack> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-graph-"));
  const modelsDir = path.join(root, "models");
  const outputDir = path.join(root, "outputs");
  const gpuDir = path.join(root, "gpu");
  for (const dir of [modelsDir, outputDir, gpuDir]) fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(modelsDir, "v1-5-pruned-emaonly.safetensors"), "");
  const ollama = await startFakeOllama({ installed: ["qwen2.5:3b"], resident: ["qwen2.5:3b"], gpuDir, ...options.ollama });
  const config = loadConfig({
    SD_CPP_BIN: sdCliDouble,
    MODELS_DIR: modelsDir,
    OUTPUT_DIR: outputDir,
    DATA_DIR: path.join(root, "data"),
    LOG_LEVEL: "silent",
    OLLAMA_BASE_URL: ollama.url,
    UNLOAD_TIMEOUT_S: "2",
    REFINE_TIMEOUT_S: "3",
    ...options.env,
  });
  const llm = new OllamaControl(config.llm, { logger: silentLlmLogger, vramSettleMs: 0, pollInitialMs: 10, pollMaxMs: 50 });
  const deps = createDiffugenDeps(config, {
    scheduler: new GpuScheduler({ llm, maxQueue: config.gpu.maxQueue, maxBatch: config.gpu.maxBatch }),
    refiner: new PromptRefiner(config.llm, { logger: silentLlmLogger }),
    sdEnv: { FAKE_GPU_DIR: gpuDir, FAKE_SD_STEP_MS: "20", ...options.sdEnv },
  });
  return {
    deps,
    ollama,
    gpuDir,
    outputDir,
    root,
    async close() {
      await deps.scheduler.close();
      await ollama.close();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

export interface RunRecord {
  events: ProgressEvent[];
  updates: Record<string, unknown>[];
  state: DiffugenStateValue;
  /** The stream's rejection, if it rejected (a cancelled run). */
  error?: unknown;
}

let thread = 0;

/** Streams one run as a server would (updates + custom) and returns what it saw. */
export async function runGraph(
  deps: DiffugenDeps,
  input: Partial<DiffugenStateValue> & Pick<DiffugenStateValue, "request">,
  options: { signal?: AbortSignal; onEvent?: (event: ProgressEvent) => void } = {},
): Promise<RunRecord> {
  const graph = builder.compile({ checkpointer: new MemorySaver() });
  const config = { configurable: { thread_id: `t${++thread}` } };
  const events: ProgressEvent[] = [];
  const updates: Record<string, unknown>[] = [];
  let error: unknown;
  try {
    const stream = await graph.stream(input, {
      ...config,
      streamMode: ["updates", "custom"],
      signal: options.signal,
      context: { deps },
    });
    for await (const [mode, chunk] of stream) {
      if (mode === "custom") {
        events.push(chunk as ProgressEvent);
        options.onEvent?.(chunk as ProgressEvent);
      } else updates.push(chunk as Record<string, unknown>);
    }
  } catch (err) {
    error = err;
  }
  const state = (await graph.getState(config)).values as DiffugenStateValue;
  return { events, updates, state, error };
}
