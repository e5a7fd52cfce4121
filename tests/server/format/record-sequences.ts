/**
 * Records what real jobs emit, for the formatter tests: the real job runner and graph,
 * against the doubles (the fake Ollama, the sd-cli double, the simulated GPU), each job's
 * JobEvents saved as JSON under fixtures/. Run it again when the events change (name
 * recordings to redo only those):
 *
 *   npx tsx tests/server/format/record-sequences.ts [chat-reply ...]
 *
 * Kept small: previews become a 1x1 PNG, server paths become /outputs/<file>, and the
 * `node` events (no formatter sees them) are left out.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createDiffugenDeps } from "../../../graphs/diffugen/dependencies.js";
import { loadConfig } from "../../../src/config/index.js";
import { GpuScheduler } from "../../../src/gpu/index.js";
import { JobRunner, type GraphStreamMode, type JobEvent, type RawJobInput } from "../../../src/jobs/index.js";
import { OllamaResidency, PromptRefiner, silentLlmLogger } from "../../../src/llm/index.js";
import { startFakeOllama, type FakeOllamaOptions } from "../../fakes/ollama-server.js";
import { makePng } from "../harness.js";
import type { RecordedSequence } from "./sequences.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, "fixtures");
const sdCli = path.resolve(here, "../../fakes/sd-cli.mjs");
const tinyPreview = makePng(1, 1).toString("base64");

interface Recording {
  name: string;
  description: string;
  input: RawJobInput;
  sdEnv?: Record<string, string>;
  ollama?: FakeOllamaOptions;
  streamModes?: GraphStreamMode[];
  /** Cancel the job once this event has been seen. */
  cancelAt?: (event: JobEvent) => boolean;
}

const image = (request: Record<string, unknown>, refinePrompt = true): RawJobInput => ({ mode: "image", refinePrompt, request: { width: 64, height: 64, ...request } });

const recordings: Recording[] = [
  { name: "success", description: "one image, prompt refined, 4 steps", input: image({ prompt: "a red fox", steps: 4 }) },
  {
    name: "previews",
    description: "one image, 8 slow steps: sd-cli writes previews along the way",
    input: image({ prompt: "a red fox", steps: 8 }),
    sdEnv: { FAKE_SD_STEP_MS: "60" },
  },
  { name: "batch", description: "a batch of 2, prompt as written", input: image({ prompt: "a (red:1.2) fox", steps: 3, batchCount: 2, seed: 42 }, false) },
  {
    name: "error",
    description: "sd-cli fails at step 2",
    input: image({ prompt: "a red fox", steps: 4 }),
    sdEnv: { FAKE_SD_CRASH_AT_STEP: "2", FAKE_SD_CRASH_MODE: "exit" },
  },
  {
    name: "cancel",
    description: "cancelled at sampling step 2",
    input: image({ prompt: "a red fox", steps: 20 }),
    sdEnv: { FAKE_SD_STEP_MS: "100" },
    cancelAt: (e) => e.type === "progress" && e.event.kind === "status" && e.event.step?.current === 2,
  },
  {
    name: "chat-draw",
    description: "a chat turn that draws",
    input: { mode: "chat", request: { prompt: "draw a red fox in the snow", width: 64, height: 64, steps: 3 }, messages: [] },
  },
  {
    name: "chat-reply",
    description: "a chat turn answered in words, streamed piece by piece",
    input: { mode: "chat", request: { prompt: "hello" }, messages: [] },
    ollama: { responder: (req) => (req.format ? JSON.stringify({ intent: "reply" }) : "Hi! Ask me to draw something.") },
  },
  {
    name: "graph",
    description: "the raw graph stream's chunks (updates, custom), one step, prompt as written",
    input: image({ prompt: "a fox", steps: 1 }, false),
    streamModes: ["updates", "custom"],
  },
];

/** Previews shrunk, server paths made machine-independent, everywhere in a value. */
function tidy(value: unknown, outputDir: string): unknown {
  if (Array.isArray(value)) return value.map((v) => tidy(v, outputDir));
  if (value === null || typeof value !== "object") {
    return typeof value === "string" && value.startsWith(outputDir) ? `/outputs/${path.basename(value)}` : value;
  }
  return Object.fromEntries(
    Object.entries(value).map(([key, v]) => [key, key === "pngBase64" && typeof v === "string" ? tinyPreview : tidy(v, outputDir)]),
  );
}

async function record(recording: Recording): Promise<RecordedSequence> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-record-"));
  const [modelsDir, outputDir, gpuDir] = ["models", "outputs", "gpu"].map((d) => path.join(root, d)) as [string, string, string];
  for (const dir of [modelsDir, outputDir, gpuDir]) fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(modelsDir, "v1-5-pruned-emaonly.safetensors"), "");
  const ollama = await startFakeOllama({ installed: ["qwen2.5:3b"], resident: ["qwen2.5:3b"], gpuDir, ...recording.ollama });
  const config = loadConfig({
    SD_CPP_BIN: sdCli,
    MODELS_DIR: modelsDir,
    OUTPUT_DIR: outputDir,
    DATA_DIR: path.join(root, "data"),
    LOG_LEVEL: "silent",
    OLLAMA_BASE_URL: ollama.url,
    UNLOAD_TIMEOUT_S: "2",
  });
  const llm = new OllamaResidency(config.llm, { logger: silentLlmLogger, vramSettleMs: 0, pollInitialMs: 10, pollMaxMs: 50 });
  const deps = createDiffugenDeps(config, {
    scheduler: new GpuScheduler({ llm, maxQueue: config.gpu.maxQueue, maxBatch: config.gpu.maxBatch }),
    refiner: new PromptRefiner(config.llm, { logger: silentLlmLogger }),
    sdEnv: { FAKE_GPU_DIR: gpuDir, FAKE_SD_STEP_MS: "20", ...recording.sdEnv },
  });
  const runner = JobRunner.open(deps);
  try {
    const job = runner.start(runner.prepare(recording.input), { streamModes: recording.streamModes });
    const events: JobEvent[] = [];
    for await (const event of job.events) {
      if (event.type !== "node") events.push(event);
      if (recording.cancelAt?.(event)) job.cancel("cancelled by request");
    }
    const { outcome } = await job.finished;
    return tidy({ name: recording.name, description: recording.description, events, finished: { outcome } }, outputDir) as RecordedSequence;
  } finally {
    await runner.dispose();
    await deps.scheduler.close();
    await ollama.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

const only = process.argv.slice(2);
const unknown = only.filter((name) => !recordings.some((r) => r.name === name));
if (unknown.length > 0) throw new Error(`no recording named ${unknown.join(", ")}`);
fs.mkdirSync(fixtures, { recursive: true });
for (const recording of recordings.filter((r) => only.length === 0 || only.includes(r.name))) {
  const sequence = await record(recording);
  fs.writeFileSync(path.join(fixtures, `${recording.name}.json`), `${JSON.stringify(sequence, null, 1)}\n`);
  console.log(`${recording.name}: ${sequence.events.length} events`);
}
