import { afterEach, describe, expect, it } from "vitest";
import { createApp } from "../../src/server/app.js";
import { isAlive, readViolations } from "../fakes/fake-gpu.mjs";
import { LLM_MODEL, startStack, type ServedStack, type StackServerOptions } from "../helpers/stack.js";
import { until } from "../helpers/until.js";
import { chatsWith, drawImage, gatewayWaiters, noSdCliAlive, postJson, readNdjson, sdCliRunning } from "./ollama-helpers.js";

/**
 * The gate: a call through /ollama that can load a model holds an LLM lease from the GPU
 * scheduler from admission until its answer has been sent, so it reaches Ollama only when
 * no diffusion job holds the GPU, waits (never refused, never sent early) while one does,
 * and gives the lease back however it ends.
 */

let stack: ServedStack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

function start(options: Partial<StackServerOptions> = {}): Promise<ServedStack> {
  return startStack({ ...options, env: { MAX_QUEUE: "64", ...options.env }, server: { ...options.server } });
}

/** Nothing held, nobody waiting, the LLM back in VRAM, the invariant never broken. */
async function expectSettled(s: ServedStack) {
  await s.deps.scheduler.whenSettled();
  expect(s.deps.scheduler.state()).toMatchObject({ gpu: { kind: "idle" }, queue: [] });
  expect(s.ollama.listed()).toContain(LLM_MODEL);
  expect(readViolations(s.gpuDir)).toEqual([]);
  const metrics = await (await fetch(`${s.url}/metrics`)).text();
  expect(metrics).toMatch(/^diffugen_gateway_llm_leases 0$/m);
}

describe("a gated call while an image is being drawn", () => {
  it("a streaming /api/chat starts only after sd-cli has exited, gets every chunk, and its first byte follows the LLM reload at once", async () => {
    const s = (stack = await start({ ollama: { loadMs: 150 }, sdEnv: { FAKE_SD_STEP_MS: "80" } }));
    const image = drawImage(s.url, 4);
    const sdPid = await sdCliRunning(s);

    const text = "what do foxes eat in the winter when the snow is deep";
    const sent = Date.now();
    const response = await postJson(`${s.url}/ollama/api/chat`, { model: LLM_MODEL, messages: [{ role: "user", content: text }] });
    // Headers come from Ollama: nothing is answered before the GPU is the LLM's again.
    expect(isAlive(sdPid)).toBe(false);
    const read = await readNdjson(response);
    expect(await image).toBe(200);

    expect(read.status).toBe(200);
    expect(read.headers.get("content-type")).toBe("application/x-ndjson");
    // Every chunk Ollama wrote, in order: the same lines as the same call straight to Ollama.
    const direct = await readNdjson(await postJson(`${s.ollama.url}/api/chat`, { model: LLM_MODEL, messages: [{ role: "user", content: text }] }));
    const contents = (r: typeof read) => r.lines.map((l) => (l.message as { content: string }).content);
    expect(contents(read)).toEqual(contents(direct));
    expect(read.lines.at(-1)).toMatchObject({ done: true, done_reason: "stop" });

    // It reached Ollama after sd-cli had exited and given the GPU back, and after the reload.
    const released = s.gpuLog.find((l) => l.message === "GPU released" && l.fields.phase === "diffusion");
    expect(released).toBeDefined();
    const [chat] = chatsWith(s, text);
    expect(chat!.at).toBeGreaterThanOrEqual(released!.at);
    expect(chat!.at).toBeGreaterThan(sent);
    const reload = s.ollama.requests.find((r) => r.kind === "load" && r.at >= released!.at);
    expect(reload?.answeredAt).toBeDefined();
    expect(chat!.at).toBeGreaterThanOrEqual(reload!.answeredAt!);
    // Granted with the reload, not after some poll: the first byte within 50 ms of the model being back.
    expect(read.firstByteAt - reload!.answeredAt!).toBeLessThanOrEqual(50);
    await expectSettled(s);
  });

  it("an unload answers at once, during diffusion, without a lease", async () => {
    const s = (stack = await start({ sdEnv: { FAKE_SD_STEP_MS: "150" } }));
    const image = drawImage(s.url, 6);
    const sdPid = await sdCliRunning(s);
    const res = await postJson(`${s.url}/ollama/api/generate`, { model: LLM_MODEL, keep_alive: 0 });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ model: LLM_MODEL, done: true, done_reason: "unload" });
    expect(isAlive(sdPid)).toBe(true);
    expect(await image).toBe(200);
    await expectSettled(s);
  });

  it("management calls need no lease: tags, ps, version, show and / answer while sd-cli holds the GPU", async () => {
    const s = (stack = await start({ sdEnv: { FAKE_SD_STEP_MS: "150" } }));
    const image = drawImage(s.url, 6);
    const sdPid = await sdCliRunning(s);
    const answers = await Promise.all([
      fetch(`${s.url}/ollama/api/tags`),
      fetch(`${s.url}/ollama/api/ps`),
      fetch(`${s.url}/ollama/api/version`),
      fetch(`${s.url}/ollama/`),
      fetch(`${s.url}/ollama`, { method: "HEAD" }),
      postJson(`${s.url}/ollama/api/show`, { model: LLM_MODEL }),
    ]);
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(await answers[3]!.text()).toBe("Ollama is running");
    expect(((await answers[1]!.json()) as { models: unknown[] }).models).toEqual([]);
    expect(isAlive(sdPid)).toBe(true);
    expect(s.deps.scheduler.state().gpu.kind).toBe("diffusion");
    expect(await image).toBe(200);
    await expectSettled(s);
  });
});

describe("refusals the scheduler decides", () => {
  it("a full GPU queue: 429 in Ollama's shape with Retry-After, nothing forwarded; the waiting call still answered", async () => {
    const s = (stack = await start({ env: { MAX_QUEUE: "1" }, sdEnv: { FAKE_SD_STEP_MS: "100" } }));
    const image = drawImage(s.url, 6);
    await sdCliRunning(s);
    const waiting = postJson(`${s.url}/ollama/api/chat`, { model: LLM_MODEL, stream: false, messages: [{ role: "user", content: "first in line" }] });
    await until("the first call to wait", () => gatewayWaiters(s).length === 1);
    const refused = await postJson(`${s.url}/ollama/api/embed`, { model: LLM_MODEL, input: "one too many" });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(await refused.json()).toEqual({ error: expect.stringMatching(/GPU queue is full/) });
    expect(s.ollama.requests.some((r) => r.path === "/api/embed")).toBe(false);
    expect((await waiting).status).toBe(200);
    expect(await image).toBe(200);
    await expectSettled(s);
  });

  it("shutting down: a new gated call gets 503, a management call still goes", async () => {
    const s = (stack = await start());
    const closing = new AbortController();
    closing.abort();
    const app = createApp(s.runner, { log: () => undefined, shutdown: { closing: closing.signal, cut: new AbortController().signal } });
    const chat = await app.request("/ollama/api/chat", { method: "POST", body: JSON.stringify({ model: LLM_MODEL, messages: [{ role: "user", content: "late" }] }) });
    expect(chat.status).toBe(503);
    expect(chat.headers.get("retry-after")).toBe("5");
    expect(await chat.json()).toEqual({ error: "DiffuGen is shutting down" });
    expect((await app.request("/ollama/api/tags")).status).toBe(200);
    expect(chatsWith(s, "late")).toEqual([]);
  });

  it("Ollama unreachable: 502 naming OLLAMA_BASE_URL, the lease given back", async () => {
    const s = (stack = await start());
    await s.ollama.setFault({ kind: "down" });
    const res = await postJson(`${s.url}/ollama/api/chat`, { model: LLM_MODEL, messages: [{ role: "user", content: "anyone?" }] });
    expect(res.status).toBe(502);
    const body = (await res.json()) as { error: string };
    expect(body.error).toContain(s.ollama.url);
    expect(body.error).toContain("OLLAMA_BASE_URL");
    expect(s.deps.scheduler.state().gpu).toEqual({ kind: "idle" });
    expect((await fetch(`${s.url}/ollama/api/tags`)).status).toBe(502);
    await s.ollama.setFault(null);
  });
});

describe("clients that go away", () => {
  it("while waiting for the GPU: leaves the queue, never reaches Ollama", async () => {
    const s = (stack = await start({ sdEnv: { FAKE_SD_STEP_MS: "100" } }));
    const image = drawImage(s.url, 8);
    await sdCliRunning(s);
    const text = "a question nobody waits for";
    const controller = new AbortController();
    const call = postJson(`${s.url}/ollama/api/chat`, { model: LLM_MODEL, messages: [{ role: "user", content: text }] }, { signal: controller.signal }).catch((err: unknown) => err);
    const [waiter] = await until("the call to wait in the GPU queue", () => gatewayWaiters(s).length === 1 && gatewayWaiters(s));
    controller.abort();
    expect(await call).toMatchObject({ name: "AbortError" });
    await until("the call to leave the queue", () => !s.deps.scheduler.state().queue.some((q) => q.jobId === waiter));
    expect(await image).toBe(200);
    await expectSettled(s);
    expect(chatsWith(s, text)).toEqual([]);
  });

  it("while streaming: the lease goes back at once and the upstream request is aborted", async () => {
    const s = (stack = await start({ ollama: { chunkDelayMs: 100 } }));
    const text = "a long story about a fox that walks across the whole frozen valley at night";
    const cancelledBefore = s.ollama.stats.cancelled;
    const controller = new AbortController();
    const response = await postJson(`${s.url}/ollama/api/chat`, { model: LLM_MODEL, messages: [{ role: "user", content: text }] }, { signal: controller.signal });
    const reader = response.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('"done":false');
    expect(s.deps.scheduler.state().gpu).toMatchObject({ kind: "llm", leases: 1 });

    // An image asked for now waits for that lease: the call holds the GPU while it streams.
    const image = drawImage(s.url, 2);
    await until("the image job to wait for the GPU", () => s.deps.scheduler.state().queue.some((q) => q.phase === "diffusion"));
    controller.abort();
    await until("the lease to go back", () => s.deps.scheduler.state().gpu.kind !== "llm");
    await until("Ollama to see its client gone", () => s.ollama.stats.cancelled > cancelledBefore);
    expect(await image).toBe(200);
    await expectSettled(s);
  });
});

describe("20 concurrent mixed calls", () => {
  it("Ollama chats and embeddings, OpenAI chats for two Ollama models, image jobs: all answered, no violation, no lease left, both models back", async () => {
    const other = "llama3.2:1b";
    const s = (stack = await start({
      sdEnv: { FAKE_SD_STEP_MS: "15" },
      ollama: { chunkDelayMs: 2, installed: [LLM_MODEL, other], resident: [LLM_MODEL, other] },
    }));
    const chat = async (i: number) => {
      const stream = i % 2 === 0;
      const res = await postJson(`${s.url}/ollama/api/chat`, { model: LLM_MODEL, stream, messages: [{ role: "user", content: `question ${i}` }] });
      if (!stream) return res.status === 200 && ((await res.json()) as { message: { content: string } }).message.content === `You said: question ${i}`;
      const read = await readNdjson(res);
      return read.status === 200 && read.lines.at(-1)?.done === true && read.lines.map((l) => (l.message as { content: string }).content).join("") === `You said: question ${i}`;
    };
    const embed = async (i: number) => {
      const res = await postJson(`${s.url}/ollama/api/embed`, { model: LLM_MODEL, input: `text ${i}` });
      return res.status === 200 && ((await res.json()) as { embeddings: number[][] }).embeddings.length === 1;
    };
    // OpenAI's API for an Ollama model, through DiffuGen's /v1 (routes/openai-passthrough.ts).
    const openaiChat = async (i: number) => {
      const model = i % 2 === 0 ? LLM_MODEL : other;
      const res = await postJson(`${s.url}/v1/chat/completions`, { model, messages: [{ role: "user", content: `question ${i}` }] });
      const body = (await res.json()) as { model: string; choices: { message: { content: string } }[] };
      return res.status === 200 && body.model === model && body.choices[0]?.message.content === `You said: question ${i}`;
    };
    const image = async () => (await drawImage(s.url, 2)) === 200;
    const kinds = [image, chat, embed, openaiChat] as const;
    const calls = Array.from({ length: 20 }, (_, i) => kinds[i % kinds.length]!(i));
    const results = await Promise.all(calls);
    expect(results).toEqual(results.map(() => true));
    await expectSettled(s);
    // LLM_RESTORE=previous: what Ollama held before the burst is what it holds after it.
    expect(s.ollama.listed()).toEqual(expect.arrayContaining([LLM_MODEL, other]));
    expect(noSdCliAlive(s)).toBe(true);
    expect(s.deps.scheduler.stats().grants.diffusion).toBeGreaterThanOrEqual(5);
  });
});
