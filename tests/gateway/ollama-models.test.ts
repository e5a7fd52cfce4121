import { createHash } from "node:crypto";
import { Ollama } from "ollama";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readViolations } from "../fakes/fake-gpu.mjs";
import { LLM_MODEL, startStack, type ServedStack } from "../helpers/stack.js";
import { postJson, readNdjson } from "./ollama-helpers.js";

/**
 * Model management and the rest of Ollama's API through /ollama, relayed as Ollama answers
 * it: pull/push/create progress as NDJSON ending `{"status":"success"}`, copy and delete,
 * blobs, the older /api/embeddings, Ollama's OpenAI-compatible /v1. Management needs no
 * lease; what runs a model takes one.
 */

let stack: ServedStack;
let ollama: Ollama;
let base: string;

beforeAll(async () => {
  stack = await startStack({ server: {} });
  base = `${stack.url}/ollama`;
  ollama = new Ollama({ host: base });
});
afterAll(async () => {
  await stack?.close();
});

const grants = () => stack.deps.scheduler.stats().grants.llm;

describe("model management through /ollama", () => {
  it("pull streams its progress line by line, ends with success, and the model is listed", async () => {
    const before = grants();
    const progress: string[] = [];
    for await (const part of await ollama.pull({ model: "llama3.2:1b", stream: true })) progress.push(part.status);
    expect(progress[0]).toBe("pulling manifest");
    expect(progress.at(-1)).toBe("success");
    expect((await ollama.list()).models.map((m) => m.name)).toContain("llama3.2:1b");
    // stream:false: the last status alone.
    expect(await ollama.pull({ model: "llama3.2:1b", stream: false })).toEqual({ status: "success" });
    expect(grants()).toBe(before);
  });

  it("a pull Ollama cannot do: the error line relayed as Ollama streams it (HTTP 200)", async () => {
    const res = await postJson(`${base}/api/pull`, { model: "missing-model:1b" });
    const read = await readNdjson(res);
    expect(read.status).toBe(200);
    expect(read.lines.at(-1)).toEqual({ error: "pull model manifest: file does not exist" });
  });

  it("copy, push and delete", async () => {
    await ollama.copy({ source: LLM_MODEL, destination: "my-qwen:latest" });
    expect((await ollama.list()).models.map((m) => m.name)).toContain("my-qwen:latest");
    expect(await ollama.push({ model: "my-qwen", stream: false })).toEqual({ status: "success" });
    await ollama.delete({ model: "my-qwen" });
    expect((await ollama.list()).models.map((m) => m.name)).not.toContain("my-qwen:latest");
    await expect(ollama.delete({ model: "my-qwen" })).rejects.toMatchObject({ status_code: 404 });
  });

  it("create from an uploaded blob: HEAD 404, POST 201, HEAD 200, then /api/create", async () => {
    const weights = Buffer.from("GGUF fake weights ".repeat(1000));
    const digest = `sha256:${createHash("sha256").update(weights).digest("hex")}`;
    expect((await fetch(`${base}/api/blobs/${digest}`, { method: "HEAD" })).status).toBe(404);
    expect((await fetch(`${base}/api/blobs/${digest}`, { method: "POST", body: weights })).status).toBe(201);
    expect((await fetch(`${base}/api/blobs/${digest}`, { method: "HEAD" })).status).toBe(200);
    // As `ollama create` sends it (the npm client's types lack `files`).
    const created = await readNdjson(await postJson(`${base}/api/create`, { model: "from-blob", files: { "model.gguf": digest } }));
    expect(created.lines.map((l) => l.status)).toEqual(["gathering model components", `using existing layer ${digest}`, "writing manifest", "success"]);
    expect((await ollama.list()).models.map((m) => m.name)).toContain("from-blob:latest");
  });
});

describe("the rest of Ollama's API", () => {
  it("/api/embeddings (the older API) loads the model under a lease", async () => {
    const before = grants();
    const loads = stack.ollama.stats.load;
    const answer = await ollama.embeddings({ model: LLM_MODEL, prompt: "a fox" });
    expect(answer.embedding).toHaveLength(16);
    expect(grants()).toBe(before + 1);
    expect(stack.ollama.stats.load).toBe(loads + 1);
  });

  it("/api/generate streams like /api/chat", async () => {
    const parts: string[] = [];
    for await (const part of await ollama.generate({ model: LLM_MODEL, prompt: "say something", stream: true })) parts.push(part.response ?? "");
    expect(parts.join("")).toBe("You said: say something");
  });

  it("Ollama's OpenAI-compatible /v1 at /ollama/v1: models, and a streamed chat under a lease", async () => {
    const models = (await (await fetch(`${base}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toContain(LLM_MODEL);
    const before = grants();
    const res = await postJson(`${base}/v1/chat/completions`, { model: LLM_MODEL, stream: true, messages: [{ role: "user", content: "hi" }] });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const text = await res.text();
    expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
    expect(grants()).toBe(before + 1);
  });

  it("never broke the invariant, and left nothing held", async () => {
    await stack.deps.scheduler.whenSettled();
    expect(stack.deps.scheduler.state()).toMatchObject({ gpu: { kind: "idle" }, queue: [] });
    expect(readViolations(stack.gpuDir)).toEqual([]);
  });
});
