import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { ProgressEvent } from "../../src/events/progress-event.js";
import { readViolations } from "../fakes/fake-gpu.mjs";
import { startFakeOllama, type FakeOllama } from "../fakes/ollama-server.js";
import { sdCliDouble } from "./harness.js";

/**
 * langgraph.json mounts the HTTP app (src/server/studio-app.ts) in the LangGraph dev
 * server, beside the graph. Both must drive the GPU through one scheduler, and the
 * process must own the GPU lock. This file runs in its own process (vitest forks), like
 * the dev server: it sets the environment, then loads both entry points as Studio would.
 */

let dir: string;
let ollama: FakeOllama;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-owner-"));
  const gpuDir = path.join(dir, "gpu");
  fs.mkdirSync(path.join(dir, "models"), { recursive: true });
  fs.mkdirSync(gpuDir);
  fs.writeFileSync(path.join(dir, "models", "v1-5-pruned-emaonly.safetensors"), "");
  ollama = await startFakeOllama({ installed: ["qwen2.5:3b"], resident: ["qwen2.5:3b"], gpuDir });
  Object.assign(process.env, {
    SD_CPP_BIN: sdCliDouble,
    MODELS_DIR: path.join(dir, "models"),
    OUTPUT_DIR: path.join(dir, "outputs"),
    DATA_DIR: path.join(dir, "data"),
    OLLAMA_BASE_URL: ollama.url,
    FAKE_GPU_DIR: gpuDir,
    FAKE_SD_STEP_MS: "150",
  });
});

afterAll(async () => {
  await ollama.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

it("the dev server's HTTP app and a Studio graph run share one GPU scheduler, and the process owns the GPU", async () => {
  const { app } = await import("../../src/server/studio-app.js");
  const { graph } = await import("../../graphs/studio.js");

  const lock = JSON.parse(fs.readFileSync(path.join(dir, "data", "gpu-owner.lock"), "utf8"));
  expect(lock.pid).toBe(process.pid);

  // A Studio run passes no run context: the Studio entry (graphs/studio.ts) makes one from the dev server's bootstrap.
  let seenByHttp: unknown;
  const stream = await graph.stream(
    { jobId: "studio-run-1", request: { prompt: "a red fox", width: 64, height: 64, steps: 6 } },
    { streamMode: "custom" },
  );
  for await (const chunk of stream) {
    const event = chunk as ProgressEvent;
    if (event.kind === "status" && event.step?.current === 2 && seenByHttp === undefined) {
      const health = (await (await app.request("/health")).json()) as { scheduler: { gpu: unknown } };
      seenByHttp = health.scheduler.gpu;
    }
  }
  expect(seenByHttp).toMatchObject({ kind: "diffusion", jobId: "studio-run-1" });
  expect(readViolations(path.join(dir, "gpu"))).toEqual([]);
});
