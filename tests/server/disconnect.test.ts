import fs from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { isAlive, readSpawns, readViolations } from "../fakes/fake-gpu.mjs";
import { startServerStack, type ServerStack } from "./harness.js";

let s: ServerStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

/** The GPU free, the LLM back, sd-cli gone, and the invariant never broken. */
async function expectEverythingReturned(stack: ServerStack["stack"]) {
  await stack.deps.scheduler.whenSettled();
  expect(stack.deps.scheduler.state().gpu).toEqual({ kind: "idle" });
  expect(stack.deps.scheduler.state().queue).toEqual([]);
  expect(stack.ollama.listed()).toContain("qwen2.5:3b");
  expect(stack.deps.scheduler.stats().reloads.count).toBeGreaterThanOrEqual(1);
  expect(readViolations(stack.gpuDir)).toEqual([]);
  const spawns = readSpawns(stack.gpuDir);
  expect(spawns).toHaveLength(1);
  for (const spawn of spawns) expect(isAlive(spawn.pid)).toBe(false);
  expect(fs.readdirSync(stack.outputDir).filter((f) => f.endsWith(".png"))).toEqual([]);
}

/** Reads an event stream until `seen` says so, then hangs up. */
async function readUntil(url: string, body: unknown, seen: (text: string) => boolean): Promise<void> {
  const controller = new AbortController();
  const res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal: controller.signal });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`stream ended before the point to disconnect at:\n${text}`);
    text += decoder.decode(value, { stream: true });
    if (seen(text)) break;
  }
  controller.abort();
}

const slowRun = { sdEnv: { FAKE_SD_STEP_MS: "300" } };

describe("a client that disconnects cancels its job", () => {
  it("chat stream: sd-cli is killed mid-sampling, the GPU released, the LLM reloaded", async () => {
    s = await startServerStack(slowRun);
    const started = Date.now();
    await readUntil(
      `${s.url}/v1/chat/completions`,
      { model: "diffugen", stream: true, size: "64x64", steps: 20, messages: [{ role: "user", content: "draw a red fox" }] },
      (text) => text.includes('"description":"Sampling 1/20'),
    );
    await expectEverythingReturned(s.stack);
    // 19 more steps would have taken 6 s.
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it("images stream: the same", async () => {
    s = await startServerStack(slowRun);
    await readUntil(`${s.url}/v1/images/generations`, { prompt: "a fox", size: "64x64", steps: 20, stream: true }, (text) => text.includes('"step":{"current":1,'));
    await expectEverythingReturned(s.stack);
  });

  it("seed API stream: the same", async () => {
    s = await startServerStack(slowRun);
    await readUntil(`${s.url}/generate/stream`, { prompt: "a fox", width: 64, height: 64, steps: 20 }, (text) => text.includes('"step":1,'));
    await expectEverythingReturned(s.stack);
  });

  it("raw graph stream: the same", async () => {
    s = await startServerStack(slowRun);
    await readUntil(`${s.url}/v1/graph/stream`, { request: { prompt: "a fox", width: 64, height: 64, steps: 20 } }, (text) => text.includes('"step":{"current":1,'));
    await expectEverythingReturned(s.stack);
  });

  it("non-streaming request: hanging up before the answer cancels it too", async () => {
    s = await startServerStack(slowRun);
    const controller = new AbortController();
    const request = s.client.images.generate({ prompt: "a fox", size: "64x64", steps: 20 } as never, { signal: controller.signal }).catch((e: unknown) => e);
    const deadline = Date.now() + 5_000;
    while (readSpawns(s.stack.gpuDir).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 400));
    controller.abort();
    await request;
    await expectEverythingReturned(s.stack);
  });

  it("server shutdown past its grace period cancels running jobs and gives the GPU back", async () => {
    s = await startServerStack({ ...slowRun, server: { shutdownGraceMs: 0 } });
    const request = fetch(`${s.url}/generate`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "a fox", width: 64, height: 64, steps: 20 }),
    }).catch((e: unknown) => e);
    const deadline = Date.now() + 5_000;
    while (readSpawns(s.stack.gpuDir).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await s.server.close();
    await request;
    await expectEverythingReturned(s.stack);
  });
});
