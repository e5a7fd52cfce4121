import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { readViolations } from "../fakes/fake-gpu.mjs";
import { LLM_MODEL } from "../helpers/stack.js";
import { startServerStack, type ServerStack } from "../server/harness.js";

/**
 * OpenAI's API for every Ollama model: calls for a model that is not DiffuGen's are relayed
 * to Ollama's own OpenAI-compatible API (here the fake Ollama's /v1 routes), answers unchanged.
 */

const OTHER_MODEL = "llama3.2:1b";

let s: ServerStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

/** Two models installed, each answering in its own words. */
async function twoModelStack(): Promise<ServerStack> {
  const stack = await startServerStack({ ollama: { installed: [LLM_MODEL, OTHER_MODEL], resident: [LLM_MODEL] } });
  stack.stack.ollama.setResponder((req) => `${req.model} says: ${req.lastUserMessage} (${req.endpoint})`);
  return stack;
}

/** Ollama mints a fresh id and timestamp per call: everything else must be the same bytes. */
const comparable = (text: string) => text.replace(/"id":"(chatcmpl|cmpl)-\d+"/g, '"id":"$1-N"').replace(/"created":\d+/g, '"created":0');

async function post(url: string, body: unknown): Promise<Response> {
  return fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

describe("OpenAI passthrough: chat, completions and embeddings for Ollama's models", () => {
  it("chat with two Ollama models, streamed and not: Ollama's answers, bytes and headers unchanged", async () => {
    s = await twoModelStack();
    for (const model of [LLM_MODEL, OTHER_MODEL]) {
      const answer = await s.client.chat.completions.create({ model, messages: [{ role: "user", content: "hello there" }] });
      expect(answer.object).toBe("chat.completion");
      expect(answer.model).toBe(model);
      expect(answer.choices[0]!.message.content).toBe(`${model} says: hello there (chat)`);
      expect(answer.id).toMatch(/^chatcmpl-\d+$/); // Ollama's id, not DiffuGen's

      const stream = await s.client.chat.completions.create({ model, messages: [{ role: "user", content: "count to three" }], stream: true });
      const deltas: string[] = [];
      const finish: (string | null)[] = [];
      for await (const chunk of stream) {
        expect(chunk).not.toHaveProperty("event"); // no status line: nothing had to wait
        deltas.push(chunk.choices[0]?.delta.content ?? "");
        finish.push(chunk.choices[0]?.finish_reason ?? null);
      }
      expect(deltas.join("")).toBe(`${model} says: count to three (chat)`);
      expect(deltas.filter((d) => d !== "").length).toBeGreaterThan(2); // relayed chunk by chunk
      expect(finish.at(-1)).toBe("stop");
    }

    // The same request, straight to Ollama and through DiffuGen: the same stream.
    const request = { model: OTHER_MODEL, stream: true, stream_options: { include_usage: true }, messages: [{ role: "user", content: "hi" }] };
    const direct = await post(`${s.stack.ollama.url}/v1/chat/completions`, request);
    const relayed = await post(`${s.url}/v1/chat/completions`, request);
    expect(relayed.status).toBe(200);
    expect(relayed.headers.get("content-type")).toBe(direct.headers.get("content-type"));
    expect(relayed.headers.get("content-type")).toBe("text/event-stream");
    const relayedText = await relayed.text();
    expect(comparable(relayedText)).toBe(comparable(await direct.text()));
    expect(relayedText.endsWith("data: [DONE]\n\n")).toBe(true);
    expect(relayedText).toContain('"usage":{');

    const plainDirect = await post(`${s.stack.ollama.url}/v1/chat/completions`, { ...request, stream: false });
    const plainRelayed = await post(`${s.url}/v1/chat/completions`, { ...request, stream: false });
    expect(plainRelayed.headers.get("content-type")).toBe("application/json"); // Ollama's, not DiffuGen's "; charset=UTF-8"
    expect(comparable(await plainRelayed.text())).toBe(comparable(await plainDirect.text()));

    // Each call held an LLM lease and gave it back.
    const stats = s.stack.deps.scheduler.stats();
    expect(stats.grants.llm).toBeGreaterThanOrEqual(6);
    expect(s.stack.deps.scheduler.state().gpu).toEqual({ kind: "idle" });
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });

  it("completions and embeddings, streamed and not", async () => {
    s = await twoModelStack();
    const completion = await s.client.completions.create({ model: OTHER_MODEL, prompt: "Once upon a time" });
    expect(completion.object).toBe("text_completion");
    expect(completion.choices[0]!.text).toBe(`${OTHER_MODEL} says: Once upon a time (generate)`);

    const stream = await s.client.completions.create({ model: LLM_MODEL, prompt: "Roses are red", stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
    expect(text).toBe(`${LLM_MODEL} says: Roses are red (generate)`);

    const embedded = await s.client.embeddings.create({ model: OTHER_MODEL, input: ["a red fox", "a blue whale"] });
    expect(embedded.data.map((d) => d.index)).toEqual([0, 1]);
    expect(embedded.data[0]!.embedding).toHaveLength(8);
    // The SDK asked for base64 and decoded Ollama's float32s: the same vectors as asked for directly.
    const direct = (await (await post(`${s.stack.ollama.url}/v1/embeddings`, { model: OTHER_MODEL, input: ["a red fox", "a blue whale"] })).json()) as { data: { embedding: number[] }[] };
    expect(embedded.data.map((d) => d.embedding)).toEqual(direct.data.map((d) => d.embedding.map(Math.fround)));
    // The embedding model was loaded (on the simulated GPU) by the call.
    expect(s.stack.ollama.listed()).toContain(OTHER_MODEL);
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });

  it("diffugen still draws through the chat route, and still answers in words", async () => {
    s = await twoModelStack();
    s.stack.ollama.setResponder(undefined);
    const drawn = await s.client.chat.completions.create({ model: "diffugen", size: "64x64", steps: 2, messages: [{ role: "user", content: "draw a red fox" }] } as Parameters<
      typeof s.client.chat.completions.create
    >[0] & { stream?: false });
    expect(drawn.choices[0]!.message.content).toMatch(/\/images\/[^)]+\.png\)/);
    expect(drawn.id).toMatch(/^chatcmpl-[0-9a-f]{24}$/); // DiffuGen's id

    const words = await s.client.chat.completions.create({ model: "diffugen:sd15", messages: [{ role: "user", content: "hello" }] });
    expect(words.choices[0]!.message.content).toContain("hello");
    // An unknown name in DiffuGen's namespace, or an image model's alias, is still DiffuGen's to answer.
    const unknown = await s.client.chat.completions.create({ model: "diffugen:midjourney", messages: [{ role: "user", content: "draw a fox" }] }).catch((e: unknown) => e);
    expect(unknown).toMatchObject({ status: 404, param: "model", code: "model_not_found" });
    const alias = await s.client.chat.completions.create({ model: "dall-e-3", messages: [{ role: "user", content: "hello" }] });
    expect(alias.id).toMatch(/^chatcmpl-[0-9a-f]{24}$/);
    // None went to Ollama's /v1 routes: DiffuGen's own LLM calls are native /api/chat.
    expect(s.stack.ollama.requests.filter((r) => r.path.startsWith("/v1/"))).toEqual([]);
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });
});

describe("OpenAI passthrough: errors in OpenAI's shape", () => {
  it("bad JSON, a missing or malformed model: 400 with param, nothing reaches Ollama", async () => {
    s = await twoModelStack();
    const before = s.stack.ollama.requests.length;

    const notJson = await fetch(`${s.url}/v1/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{nope" });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ error: { type: "invalid_request_error", code: "invalid_json", param: null } });

    const missing = await post(`${s.url}/v1/embeddings`, { input: "a fox" });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ error: { type: "invalid_request_error", param: "model", message: "Invalid 'model': is required" } });

    const malformed = await post(`${s.url}/v1/chat/completions`, { model: "../../etc/passwd", messages: [{ role: "user", content: "hi" }] });
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ error: { param: "model", message: expect.stringContaining("invalid model name") } });

    const badStream = await post(`${s.url}/v1/completions`, { model: OTHER_MODEL, prompt: "x", stream: "yes" });
    expect(badStream.status).toBe(400);
    expect(await badStream.json()).toMatchObject({ error: { param: "stream" } });

    const ownModel = await post(`${s.url}/v1/embeddings`, { model: "diffugen", input: "a fox" });
    expect(ownModel.status).toBe(400);
    expect(await ownModel.json()).toMatchObject({ error: { param: "model", code: "model_not_supported" } });

    // A chat body DiffuGen cannot read is still its chat route's to refuse, as before.
    const chatNotJson = await fetch(`${s.url}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{nope" });
    expect(chatNotJson.status).toBe(400);
    expect(await chatNotJson.json()).toMatchObject({ error: { code: "invalid_json" } });
    const chatNoModel = await post(`${s.url}/v1/chat/completions`, { messages: [{ role: "user", content: "hi" }] });
    expect(await chatNoModel.json()).toMatchObject({ error: { param: "model" } });

    expect(s.stack.ollama.requests.length).toBe(before);
    expect(s.stack.deps.scheduler.stats().grants.llm).toBe(0);
  });

  it("a model Ollama does not have: Ollama's 404, relayed as it is", async () => {
    s = await twoModelStack();
    const err = await s.client.chat.completions.create({ model: "mistral:7b", messages: [{ role: "user", content: "hi" }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    const direct = await post(`${s.stack.ollama.url}/v1/chat/completions`, { model: "mistral:7b", messages: [{ role: "user", content: "hi" }] });
    const relayed = await post(`${s.url}/v1/chat/completions`, { model: "mistral:7b", messages: [{ role: "user", content: "hi" }] });
    expect(relayed.status).toBe(404);
    const body = await relayed.text();
    expect(body).toBe(await direct.text());
    expect(JSON.parse(body)).toEqual({ error: { message: "model 'mistral:7b' not found", type: "not_found_error", param: null, code: null } });
    expect(s.stack.deps.scheduler.state().gpu).toEqual({ kind: "idle" }); // the lease went back
  });

  it("shutting down (the GPU scheduler closed): 503 shutting_down with Retry-After, nothing reaches Ollama", async () => {
    s = await twoModelStack();
    const closed = s.stack.deps.scheduler.close();
    const res = await post(`${s.url}/v1/embeddings`, { model: OTHER_MODEL, input: "a fox" });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("5");
    expect(await res.json()).toMatchObject({ error: { type: "server_error", code: "shutting_down" } });
    expect(s.stack.ollama.requests.filter((r) => r.body?.model === OTHER_MODEL)).toEqual([]);
    await closed;
  });

  it("Ollama down: 502 in OpenAI's shape, the lease given back", async () => {
    s = await twoModelStack();
    await s.stack.ollama.setFault({ kind: "down" });
    const res = await post(`${s.url}/v1/chat/completions`, { model: OTHER_MODEL, messages: [{ role: "user", content: "hi" }] });
    expect(res.status).toBe(502);
    expect(await res.json()).toMatchObject({ error: { type: "server_error", code: "ollama_unreachable", message: expect.stringContaining(s.stack.ollama.url) } });
    expect(s.stack.deps.scheduler.state().gpu).toEqual({ kind: "idle" });
    await s.stack.ollama.setFault(null);
  });
});
