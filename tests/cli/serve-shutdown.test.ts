import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isAlive, readSpawns, readViolations } from "../fakes/fake-gpu.mjs";
import type { FakeOllama } from "../fakes/ollama-server.js";
import { parseSse } from "../server/harness.js";
import { startFakeBox, type FakeBox } from "./helpers/fake-box.js";
import { startServe, type ServeProcess } from "./helpers/serve-process.js";

/**
 * `diffugen serve` stopped by SIGTERM / Ctrl-C while it draws: running jobs get the grace
 * period, then are cancelled; no sd-cli is left, the LLM is back in VRAM, exit code 0.
 */

let box: FakeBox;
let dir: string;
let gpuDir: string;
let ollama: FakeOllama;
let serve: ServeProcess | undefined;

beforeEach(async () => {
  box = await startFakeBox("shutdown");
  ({ dir, gpuDir, ollama } = box);
});

afterEach(async () => {
  await serve?.kill();
  serve = undefined;
  await box.close();
});

function startDiffugen(env: Record<string, string>): Promise<ServeProcess> {
  return startServe(box.env({ PORT: "0", HOST: "127.0.0.1", API_KEY: "", UNLOAD_TIMEOUT_S: "5", ...env }), dir);
}

/** A streaming image request; `text` is everything received, `ended` when the stream closes. */
function streamImage(url: string, steps: number) {
  let text = "";
  const waiters = new Set<() => void>();
  const ended = (async () => {
    const res = await fetch(`${url}/v1/images/generations`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "a red fox", size: "64x64", steps, stream: true }),
    });
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body!) {
        text += decoder.decode(chunk as Uint8Array, { stream: true });
        for (const w of waiters) w();
      }
    } catch {
      // the connection was cut: what arrived is in `text`
    }
    for (const w of waiters) w();
    return text;
  })();
  const waitFor = (snippet: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (text.includes(snippet)) resolve();
      };
      waiters.add(check);
      check();
      void ended.then(() => (text.includes(snippet) ? resolve() : reject(new Error(`stream ended without ${snippet}:\n${text}`))), reject);
    });
  return { ended, waitFor };
}

/** What a user checks once the server is gone: no sd-cli, the LLM loaded, the GPU never shared. */
function expectGpuReturned() {
  const spawns = readSpawns(gpuDir);
  expect(spawns).toHaveLength(1);
  for (const spawn of spawns) expect(isAlive(spawn.pid), `sd-cli pid ${spawn.pid} still running`).toBe(false);
  expect(ollama.listed()).toContain("qwen2.5:3b");
  expect(readViolations(gpuDir)).toEqual([]);
}

function savedImages(): string[] {
  const out = path.join(dir, "outputs");
  return fs.existsSync(out) ? fs.readdirSync(out).filter((f) => f.endsWith(".png")) : [];
}

describe("diffugen serve shuts down gracefully", () => {
  it("SIGTERM with a job in flight: the job finishes within the grace period, its client gets the image, new requests are refused, exit 0", async () => {
    serve = await startDiffugen({ SHUTDOWN_GRACE_S: "60", FAKE_SD_STEP_MS: "150" });
    const job = streamImage(serve.url, 8);
    await job.waitFor('"step":{"current":1,');

    serve.signal("SIGTERM");
    // Printed once the port is closed and the job runner refuses new jobs.
    await serve.waitForOutput(/waiting up to 60 s for 1 running job to finish/);
    // A new request during shutdown: the port no longer takes connections (or answers 503).
    const late = await fetch(`${serve.url}/v1/images/generations`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "a second fox", size: "64x64", steps: 2 }),
    }).then(
      (res) => res.status,
      (err: unknown) => (err as { cause?: { code?: string } }).cause?.code ?? String(err),
    );
    expect([503, "ECONNREFUSED"]).toContain(late);

    const text = await job.ended;
    const completed = parseSse(text).messages.filter((m) => m.event === "image_generation.completed");
    expect(completed, text).toHaveLength(1);
    expect(JSON.parse(completed[0]!.data).b64_json).toMatch(/^iVBOR/);

    expect(await serve.exited).toEqual({ code: 0, signal: null });
    expect(serve.stdout()).not.toMatch(/cancelling/);
    expect(savedImages()).toHaveLength(1);
    // One sd-cli run only: the late request never reached the GPU.
    expectGpuReturned();
  });

  it("SIGTERM with a job longer than SHUTDOWN_GRACE_S: the job is cancelled, sd-cli killed, the LLM reloaded, exit 0", async () => {
    serve = await startDiffugen({ SHUTDOWN_GRACE_S: "0.5", FAKE_SD_STEP_MS: "300" });
    const job = streamImage(serve.url, 40);
    await job.waitFor('"step":{"current":1,');

    serve.signal("SIGTERM");
    const text = await job.ended;
    expect(await serve.exited).toEqual({ code: 0, signal: null });

    expect(text).not.toContain("image_generation.completed");
    expect(serve.stdout()).toMatch(/grace period over: cancelling 1 running job/);
    expect(serve.stdout()).toMatch(/stopped/);
    expect(savedImages()).toEqual([]);
    expectGpuReturned();
  });

  it("a second Ctrl-C during the grace period cancels the job at once, still leaving no sd-cli and the LLM loaded", async () => {
    serve = await startDiffugen({ SHUTDOWN_GRACE_S: "600", FAKE_SD_STEP_MS: "300" });
    const job = streamImage(serve.url, 40);
    await job.waitFor('"step":{"current":1,');

    serve.signal("SIGINT");
    await serve.waitForOutput(/waiting up to 600 s for 1 running job/);
    serve.signal("SIGINT");
    const text = await job.ended;
    expect(await serve.exited).toEqual({ code: 0, signal: null });

    expect(text).not.toContain("image_generation.completed");
    expect(serve.stdout()).toMatch(/SIGINT again: cancelling the running jobs now/);
    expect(savedImages()).toEqual([]);
    expectGpuReturned();
  });

  it("SIGTERM when idle exits 0 at once and releases the GPU owner lock", async () => {
    serve = await startDiffugen({});
    expect(fs.existsSync(path.join(dir, "data", "gpu-owner.lock"))).toBe(true);
    serve.signal("SIGTERM");
    expect(await serve.exited).toEqual({ code: 0, signal: null });
    expect(fs.existsSync(path.join(dir, "data", "gpu-owner.lock"))).toBe(false);
    expect(ollama.listed()).toContain("qwen2.5:3b");
  });
});
