import { execSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "@langchain/langgraph-sdk";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { DiffugenStateValue } from "../../graphs/diffugen/state.js";
import type { ProgressEvent } from "../../src/events/progress-event.js";
import { readViolations, runningDiffusions } from "../fakes/fake-gpu.mjs";
import { startFakeOllama, type FakeOllama } from "../fakes/ollama-server.js";
import { sdCliDouble } from "../graph/harness.js";
import { freePort, readRepoConfig, startDevServer, writeTestConfig, type DevServer } from "./dev-server.js";

/**
 * What LangGraph Studio does, end to end: `langgraphjs dev` loads the graph langgraph.json
 * names (and the HTTP app beside it), and a client drives it over the LangGraph API with
 * the SDK, streaming `custom` (our progress events) and `updates` (node by node). The
 * server runs against the doubles: the fake Ollama and the sd-cli double share one
 * simulated GPU, so the invariant is checked across a real dev-server process tree.
 */

const graphId = Object.keys(readRepoConfig().graphs)[0] ?? "diffugen";
const llm = "qwen2.5:3b";

let root: string;
let gpuDir: string;
let outputDir: string;
let ollama: FakeOllama | undefined;
let server: DevServer | undefined;

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-studio-"));
  const modelsDir = path.join(root, "models");
  outputDir = path.join(root, "outputs");
  gpuDir = path.join(root, "gpu");
  const dataDir = path.join(root, "data");
  const configDir = path.join(root, "langgraph");
  for (const dir of [modelsDir, outputDir, gpuDir, dataDir, configDir]) fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(modelsDir, "v1-5-pruned-emaonly.safetensors"), "");

  ollama = await startFakeOllama({ installed: [llm], resident: [llm], gpuDir });
  server = await startDevServer({
    configFile: writeTestConfig(configDir),
    port: await freePort(),
    env: {
      SD_CPP_BIN: sdCliDouble,
      MODELS_DIR: modelsDir,
      OUTPUT_DIR: outputDir,
      DATA_DIR: dataDir,
      OLLAMA_BASE_URL: ollama.url,
      LLM_MODEL: llm,
      FAKE_GPU_DIR: gpuDir,
      FAKE_SD_STEP_MS: "50",
    },
    readyTimeoutMs: 60_000,
  });
}, 90_000);

afterAll(async () => {
  try {
    if (server) {
      await server.stop();
      expect(server.remaining()).toEqual([]);
      // Nothing of this dev server (CLI, tsx, API server) is left anywhere on the box.
      const leftovers = execSync("ps -eo pid=,args=", { encoding: "utf8" })
        .split("\n")
        .filter((line) => line.includes(root) && /langgraph|tsx|entrypoint/.test(line));
      expect(leftovers).toEqual([]);
    }
  } finally {
    await ollama?.close();
    if (root) fs.rmSync(root, { recursive: true, force: true });
  }
}, 30_000);

/** An SDK client on a new thread; a failing test prints the dev server's log. */
async function openThread(onTestFailed: (fn: () => void) => void) {
  const dev = server!;
  onTestFailed(() => console.error(`--- langgraphjs dev log ---\n${dev.log().slice(-20_000)}`));
  const client = new Client({ apiUrl: dev.url });
  return { client, thread: await client.threads.create() };
}

it(`langgraphjs dev runs the "${graphId}" graph for an SDK client: live progress, node updates, the image in state`, async ({
  onTestFailed,
}) => {
  const { client, thread } = await openThread(onTestFailed);

  const events: ProgressEvent[] = [];
  const updates: Record<string, unknown>[] = [];
  const other: { event: string; data: unknown }[] = [];
  for await (const chunk of client.runs.stream(thread.thread_id, graphId, {
    input: { request: { prompt: "a red fox", width: 64, height: 64, steps: 4 } },
    streamMode: ["custom", "updates"],
  })) {
    if (chunk.event === "custom") events.push(chunk.data as ProgressEvent);
    else if (chunk.event === "updates") updates.push(chunk.data as Record<string, unknown>);
    else other.push({ event: chunk.event, data: chunk.data });
  }

  // The run ended without an error event (only run metadata besides our two modes).
  expect(other.filter((c) => c.event !== "metadata")).toEqual([]);

  // updates: the graph's path, node by node.
  expect(updates.flatMap((update) => Object.keys(update))).toEqual(["refine", "unload", "diffuse", "reload"]);

  // custom: real sampling progress from sd-cli's output, then the image.
  const sampling = events.filter((e) => e.kind === "status" && e.phase === "sampling" && e.step);
  expect([...new Set(sampling.map((e) => e.kind === "status" && e.step?.current))]).toEqual([1, 2, 3, 4]);
  expect(sampling.every((e) => e.kind === "status" && e.step?.total === 4)).toBe(true);
  const image = events.find((e) => e.kind === "image");
  expect(image).toMatchObject({ kind: "image", width: 64, height: 64, index: 0 });
  expect(events.map((e) => e.phase)).toEqual(expect.arrayContaining(["refining", "unloading_llm", "sampling", "reloading_llm", "complete"]));
  expect(events.at(-1)).toMatchObject({ kind: "status", phase: "complete" });

  // The thread's state holds the refined prompt and the image, a real PNG of the asked size.
  const state = await client.threads.getState<DiffugenStateValue>(thread.thread_id);
  const values = state.values;
  expect(values.error).toBeUndefined();
  expect(values.refined?.prompt).toEqual(expect.any(String));
  expect(values.refined?.prompt.length).toBeGreaterThan(0);
  expect(values.images).toHaveLength(1);
  const [saved] = values.images;
  expect(saved).toMatchObject({ width: 64, height: 64, index: 0 });
  expect(image).toMatchObject({ path: saved!.path, seed: saved!.seed });
  expect(path.dirname(saved!.path)).toBe(outputDir);
  const png = fs.readFileSync(saved!.path);
  expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([64, 64]);

  // One GPU: never both models at once, and the LLM is back in VRAM at the end.
  expect(readViolations(gpuDir)).toEqual([]);
  expect(ollama!.stats.unload).toBeGreaterThanOrEqual(1);
  expect(ollama!.listed()).toContain(llm);
}, 120_000);

it("cancelling a Studio run mid-sampling stops sd-cli at once and brings the LLM back", async ({
  onTestFailed,
}) => {
  const { client, thread } = await openThread(onTestFailed);
  const unloadsBefore = ollama!.stats.unload;

  let runId: string | undefined;
  let cancelled = false;
  for await (const chunk of client.runs.stream(thread.thread_id, graphId, {
    input: { request: { prompt: "a slow fox", width: 64, height: 64, steps: 60 } },
    streamMode: ["custom"],
  })) {
    if (chunk.event === "metadata") runId = (chunk.data as { run_id: string }).run_id;
    const event = chunk.data as ProgressEvent;
    if (!cancelled && chunk.event === "custom" && event.kind === "status" && event.step?.current === 2) {
      cancelled = true;
      await client.runs.cancel(thread.thread_id, runId!);
    }
  }
  expect(cancelled).toBe(true);

  // sd-cli is gone and the LLM is resident again, well before the 60 steps (3 s) would end.
  const deadline = Date.now() + 10_000;
  while ((runningDiffusions(gpuDir).length > 0 || !ollama!.listed().includes(llm)) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect(runningDiffusions(gpuDir)).toEqual([]);
  expect(ollama!.listed()).toContain(llm);
  expect(ollama!.stats.unload).toBeGreaterThan(unloadsBefore);
  expect(readViolations(gpuDir)).toEqual([]);
}, 60_000);
