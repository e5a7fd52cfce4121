import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { startFakeOllama, type FakeOllama } from "../fakes/ollama-server.js";
import { sdCliDouble } from "../graph/harness.js";
import { freePort, startDevServer, writeTestConfig, type DevServer } from "./dev-server.js";

/**
 * Ctrl-C on `npm run studio`: the terminal sends SIGINT to the whole foreground process
 * group (the langgraphjs CLI, the tsx watcher, the API server that loaded our modules).
 * The process holding the Studio bootstrap must close it before it exits: the job store
 * closes (no jobs.sqlite-wal / -shm left) and the GPU owner lock goes.
 */

const llm = "qwen2.5:3b";

let root: string | undefined;
let ollama: FakeOllama | undefined;
let server: DevServer | undefined;

afterEach(async () => {
  try {
    await server?.stop();
  } finally {
    await ollama?.close();
    if (root) fs.rmSync(root, { recursive: true, force: true });
    server = ollama = root = undefined;
  }
}, 30_000);

it.each([
  { mode: "with the tsx watcher (npm run studio)", reload: true },
  { mode: "without reload", reload: false },
])("Ctrl-C $mode closes the job store and releases the GPU lock before the dev server exits", async ({ reload, mode }) => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-studio-stop-"));
  const modelsDir = path.join(root, "models");
  const outputDir = path.join(root, "outputs");
  const gpuDir = path.join(root, "gpu");
  const dataDir = path.join(root, "data");
  const configDir = path.join(root, "langgraph");
  for (const dir of [modelsDir, outputDir, gpuDir, dataDir, configDir]) fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(modelsDir, "v1-5-pruned-emaonly.safetensors"), "");

  ollama = await startFakeOllama({ installed: [llm], resident: [llm], gpuDir });
  server = await startDevServer({
    configFile: writeTestConfig(configDir),
    port: await freePort(),
    reload,
    env: {
      SD_CPP_BIN: sdCliDouble,
      MODELS_DIR: modelsDir,
      OUTPUT_DIR: outputDir,
      DATA_DIR: dataDir,
      OLLAMA_BASE_URL: ollama.url,
      LLM_MODEL: llm,
      FAKE_GPU_DIR: gpuDir,
      FAKE_SD_STEP_MS: "10",
    },
  });
  const dev = server;
  const failed = (what: string) => `${mode}: ${what}\n--- langgraphjs dev log ---\n${dev.log().slice(-10_000)}`;

  // One job through the HTTP app the dev server mounts: the store is written.
  const res = await fetch(`${dev.url}/v1/images/generations`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ prompt: "a red fox", size: "64x64", steps: 2, response_format: "b64_json" }),
  });
  expect(res.status, failed(await res.clone().text())).toBe(200);
  await res.json();
  const files = () => fs.readdirSync(dataDir).sort();
  expect(files(), failed("the job store and the lock exist while serving")).toEqual(
    expect.arrayContaining(["gpu-owner.lock", "jobs.sqlite", "jobs.sqlite-wal"]),
  );

  // Ctrl-C: SIGINT to the whole process group; every process must end by itself.
  expect(await dev.interrupt("SIGINT", 15_000), failed(`still running: ${dev.remaining().join("; ")}`)).toBe(true);
  expect(dev.remaining()).toEqual([]);
  expect(files(), failed("what Ctrl-C left in DATA_DIR")).toEqual(["jobs.sqlite"]);
}, 60_000);
