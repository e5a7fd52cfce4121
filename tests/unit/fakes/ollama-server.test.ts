import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Ollama } from "ollama";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { markDiffusionEnded, markDiffusionStarted, readViolations, residentModels } from "../../fakes/fake-gpu.mjs";
import { startFakeOllama, type FakeOllama } from "../../fakes/ollama-server.js";

let gpuDir: string;
let ollama: FakeOllama | undefined;

beforeEach(() => {
  gpuDir = fs.mkdtempSync(path.join(os.tmpdir(), "fake-ollama-"));
});

afterEach(async () => {
  markDiffusionEnded(gpuDir, process.pid);
  await ollama?.close();
  ollama = undefined;
  fs.rmSync(gpuDir, { recursive: true, force: true });
});

async function start(opts: Parameters<typeof startFakeOllama>[0] = {}): Promise<{ fake: FakeOllama; client: Ollama }> {
  ollama = await startFakeOllama({ gpuDir, ...opts });
  return { fake: ollama, client: new Ollama({ host: ollama.url }) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("fake Ollama: /api/chat", () => {
  it("streams NDJSON chunks that the real ollama client reads to a final done:true line", async () => {
    const { fake, client } = await start();
    const parts = [];
    for await (const part of await client.chat({ model: "qwen2.5:3b", messages: [{ role: "user", content: "hello there" }], stream: true })) {
      parts.push(part);
    }
    expect(parts.length).toBeGreaterThanOrEqual(4);
    const last = parts.at(-1)!;
    expect(last.done).toBe(true);
    expect(last.done_reason).toBe("stop");
    expect(last.eval_count).toBeGreaterThan(0);
    expect(last.total_duration).toBeGreaterThan(0);
    expect(parts.slice(0, -1).every((p) => p.done === false)).toBe(true);
    expect(parts.map((p) => p.message.content).join("")).toBe("You said: hello there");

    const raw = await fetch(`${fake.url}/api/chat`, {
      method: "POST",
      body: JSON.stringify({ model: "qwen2.5:3b", messages: [{ role: "user", content: "hi" }] }),
    });
    expect(raw.headers.get("content-type")).toBe("application/x-ndjson");
    const lines = (await raw.text()).trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.at(-1)).toMatchObject({ done: true, done_reason: "stop", message: { role: "assistant", content: "" } });
    expect(fake.stats.chat).toBe(2);
  });

  it("answers stream:false with one object, and a `format` schema with JSON that fits it", async () => {
    const { client } = await start();
    const schema = {
      type: "object",
      properties: { prompt: { type: "string" }, negative_prompt: { type: "string" } },
      required: ["prompt", "negative_prompt"],
    };
    const res = await client.chat({ model: "qwen2.5:3b", messages: [{ role: "user", content: "a red fox" }], format: schema });
    expect(res.done).toBe(true);
    expect(JSON.parse(res.message.content)).toEqual({ prompt: "a red fox, highly detailed", negative_prompt: "blurry, lowres" });
  });

  it("answers 404 model 'x' not found for a model that is not installed", async () => {
    const { client } = await start();
    const err = await client.chat({ model: "llama3.2:1b", messages: [{ role: "user", content: "hi" }] }).catch((e: unknown) => e);
    expect(err).toMatchObject({ status_code: 404, error: "model 'llama3.2:1b' not found" });
    const unload = await client.chat({ model: "llama3.2:1b", messages: [], keep_alive: 0 }).catch((e: unknown) => e);
    expect(unload).toMatchObject({ status_code: 404 });
  });

  it("serves /api/generate with prompt/response and a final done line with context", async () => {
    const { client } = await start();
    const parts = [];
    for await (const p of await client.generate({ model: "qwen2.5:3b", prompt: "say hi", stream: true })) parts.push(p);
    expect(parts.map((p) => p.response).join("")).toBe("You said: say hi");
    expect(parts.at(-1)).toMatchObject({ done: true, done_reason: "stop" });
    expect(parts.at(-1)?.context).toBeInstanceOf(Array);
  });

  it("answers /, /api/version and /api/tags", async () => {
    const { fake, client } = await start({ installed: ["qwen2.5:3b", "llama3.2"] });
    expect(await (await fetch(fake.url)).text()).toBe("Ollama is running");
    expect((await client.version()).version).toMatch(/^\d+\.\d+\.\d+$/);
    expect((await client.list()).models.map((m) => m.name)).toEqual(["qwen2.5:3b", "llama3.2:latest"]);
  });
});

describe("fake Ollama: load, unload and /api/ps", () => {
  it("keeps listing an unloaded model for unloadLingerMs, like the real one, and mirrors it on the GPU", async () => {
    const { fake, client } = await start({ unloadLingerMs: 200 });
    const load = await client.chat({ model: "qwen2.5:3b", messages: [], keep_alive: -1 });
    expect(load).toMatchObject({ done: true, done_reason: "load", message: { role: "assistant", content: "" } });
    expect((await client.ps()).models.map((m) => m.name)).toEqual(["qwen2.5:3b"]);
    expect(residentModels(gpuDir)).toEqual(["qwen2.5:3b"]);

    const unload = await client.chat({ model: "qwen2.5:3b", messages: [], keep_alive: 0 });
    expect(unload.done_reason).toBe("unload");
    expect((await client.ps()).models.map((m) => m.name)).toEqual(["qwen2.5:3b"]);
    expect(residentModels(gpuDir)).toEqual(["qwen2.5:3b"]);

    await sleep(300);
    expect((await client.ps()).models).toEqual([]);
    expect(residentModels(gpuDir)).toEqual([]);
    expect(fake.stats).toMatchObject({ load: 1, unload: 1, ps: 3, modelLoads: 1 });
  });

  it("strict: keeps an unloaded model in /api/ps for 200 ms by default, and notes when it left", async () => {
    const { fake, client } = await start({ strict: true, resident: ["qwen2.5:3b"] });
    await client.chat({ model: "qwen2.5:3b", messages: [], keep_alive: 0 });
    const listed = await client.ps();
    expect(listed.models.map((m) => m.name)).toEqual(["qwen2.5:3b"]);
    // Ollama sets expires_at to the moment it accepted the unload.
    expect(Date.parse(String(listed.models[0]!.expires_at))).toBeLessThanOrEqual(Date.now());
    const unload = fake.requests.find((r) => r.kind === "unload")!;
    expect(unload.goneAt).toBeUndefined();
    await sleep(260);
    expect((await client.ps()).models).toEqual([]);
    expect(unload.goneAt! - unload.receivedAt).toBeGreaterThanOrEqual(195);
    expect(unload.goneAt! - unload.receivedAt).toBeLessThan(260);
  });

  it("strict: a request for a model being unloaded waits until it is gone, then loads it anew", async () => {
    const { fake, client } = await start({ strict: true, unloadLingerMs: 150, resident: ["qwen2.5:3b"] });
    fake.resetStats();
    await client.chat({ model: "qwen2.5:3b", messages: [], keep_alive: 0 });
    const reply = await client.chat({ model: "qwen2.5:3b", messages: [{ role: "user", content: "hi" }] });
    expect(reply.done).toBe(true);
    const [unload, chat] = fake.requests.filter((r) => r.kind === "unload" || r.kind === "chat");
    expect(chat!.finishedAt!).toBeGreaterThanOrEqual(unload!.goneAt!);
    expect(fake.stats.modelLoads).toBe(1);
    expect(fake.listed()).toEqual(["qwen2.5:3b"]);
  });

  it("notes each request's own time on the shared clock (arrival → answer sent)", async () => {
    const { fake, client } = await start({ chatDelayMs: 80, resident: ["qwen2.5:3b"] });
    const before = performance.timeOrigin + performance.now();
    await client.chat({ model: "qwen2.5:3b", messages: [{ role: "user", content: "hi" }] });
    await client.ps();
    const after = performance.timeOrigin + performance.now();
    const [chat, ps] = fake.requests;
    expect(chat!.receivedAt).toBeGreaterThanOrEqual(before);
    expect(chat!.finishedAt! - chat!.receivedAt).toBeGreaterThanOrEqual(79);
    expect(ps!.receivedAt).toBeGreaterThanOrEqual(chat!.finishedAt!);
    expect(ps!.finishedAt!).toBeLessThanOrEqual(after);
    // Linger 0: the unload is gone the moment it is answered.
    await client.chat({ model: "qwen2.5:3b", messages: [], keep_alive: 0 });
    const unload = fake.requests.at(-1)!;
    expect(unload.goneAt).toBeDefined();
    expect(unload.goneAt!).toBeLessThanOrEqual(unload.finishedAt!);
  });

  it("answers unload of a model that is not loaded with 200 unload", async () => {
    const { client } = await start();
    expect((await client.chat({ model: "qwen2.5:3b", messages: [], keep_alive: 0 })).done_reason).toBe("unload");
  });

  it("never drops the model with unloadNeverCompletes", async () => {
    const { client } = await start({ unloadNeverCompletes: true, resident: ["qwen2.5:3b"] });
    await client.chat({ model: "qwen2.5:3b", messages: [], keep_alive: 0 });
    await sleep(100);
    expect((await client.ps()).models.map((m) => m.name)).toEqual(["qwen2.5:3b"]);
  });

  it("lists size, size_vram, expires_at, details and context_length; a different num_ctx reloads", async () => {
    const { fake, client } = await start({ installed: [{ name: "qwen2.5:3b", size: 4e9, sizeVram: 3e9 }] });
    await client.chat({ model: "qwen2.5:3b", messages: [], keep_alive: "5m", options: { num_ctx: 8192 } });
    const [m] = (await client.ps()).models as unknown as Record<string, unknown>[];
    expect(m).toMatchObject({ size: 4e9, size_vram: 3e9, context_length: 8192, details: { format: "gguf" } });
    expect(Date.parse(String(m?.expires_at)) - Date.now()).toBeGreaterThan(4 * 60_000);

    await client.chat({ model: "qwen2.5:3b", messages: [{ role: "user", content: "hi" }], options: { num_ctx: 8192 } });
    expect(fake.stats.modelLoads).toBe(1);
    await client.chat({ model: "qwen2.5:3b", messages: [{ role: "user", content: "hi" }] });
    expect(fake.stats.modelLoads).toBe(2);
  });

  it("expires a model after its keep_alive", async () => {
    const { client } = await start();
    await client.chat({ model: "qwen2.5:3b", messages: [{ role: "user", content: "hi" }], keep_alive: 0.15 });
    expect((await client.ps()).models).toHaveLength(1);
    await sleep(300);
    expect((await client.ps()).models).toHaveLength(0);
  });

  it("rejects a keep_alive string without a unit like Go's time.ParseDuration", async () => {
    const { client } = await start();
    await expect(client.chat({ model: "qwen2.5:3b", messages: [], keep_alive: "300" })).rejects.toMatchObject({ status_code: 400 });
  });
});

describe("fake Ollama: the simulated GPU", () => {
  it("records a violation when a model loads while an sd-cli double holds the GPU", async () => {
    const { client } = await start();
    markDiffusionStarted(gpuDir, process.pid);
    await client.chat({ model: "qwen2.5:3b", messages: [{ role: "user", content: "hi" }] });
    const violations = readViolations(gpuDir);
    expect(violations).toHaveLength(1);
    expect(violations[0]).toMatchObject({ by: "ollama" });
    expect(violations[0]?.what).toContain("qwen2.5:3b");
  });

  it("records none for /api/ps and unloads during a diffusion", async () => {
    const { client } = await start({ resident: ["qwen2.5:3b"] });
    markDiffusionStarted(gpuDir, process.pid);
    await client.ps();
    await client.chat({ model: "qwen2.5:3b", messages: [], keep_alive: 0 });
    expect(readViolations(gpuDir)).toEqual([]);
  });
});

describe("fake Ollama: faults", () => {
  it("goes down (connection refused, models gone) and comes back on the same port", async () => {
    const { fake, client } = await start({ resident: ["qwen2.5:3b"] });
    await fake.setFault({ kind: "down" });
    const err = await client.ps().catch((e: unknown) => e);
    expect(JSON.stringify((err as { cause?: unknown }).cause ?? {}) + String(err)).toMatch(/ECONNREFUSED|fetch failed/);
    expect(residentModels(gpuDir)).toEqual([]);
    await fake.setFault(null);
    expect((await client.ps()).models).toEqual([]);
  });

  it("sends an error line with HTTP 200 mid-stream; the client throws it", async () => {
    const { fake, client } = await start();
    await fake.setFault({ kind: "error-mid-stream", error: "runner crashed" });
    const read = async () => {
      for await (const _ of await client.chat({ model: "qwen2.5:3b", messages: [{ role: "user", content: "a b c d" }], stream: true })) void _;
    };
    await expect(read()).rejects.toThrow("runner crashed");
  });

  it("resets the connection mid-stream", async () => {
    const { fake, client } = await start();
    await fake.setFault({ kind: "reset-mid-stream" });
    const read = async () => {
      for await (const _ of await client.chat({ model: "qwen2.5:3b", messages: [{ role: "user", content: "a b c d" }], stream: true })) void _;
    };
    await expect(read()).rejects.toThrow();
  });

  it("answers an injected status for the chosen kinds, a limited number of times", async () => {
    const { fake, client } = await start();
    await fake.setFault({ kind: "status", status: 500, error: "boom" }, { on: ["ps"], times: 1 });
    await expect(client.ps()).rejects.toMatchObject({ status_code: 500, error: "boom" });
    expect((await client.ps()).models).toEqual([]);
  });

  it("returns content that is not JSON with invalid-json", async () => {
    const { fake, client } = await start();
    await fake.setFault({ kind: "invalid-json" });
    const res = await client.chat({ model: "qwen2.5:3b", messages: [{ role: "user", content: "x" }], format: { type: "object" } });
    expect(() => JSON.parse(res.message.content)).toThrow();
  });
});
