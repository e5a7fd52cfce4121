import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import type { GpuSchedulerState, GpuSchedulerStats } from "../../src/gpu/index.js";
import { describeGpuWait, describeGpuWaitOver, formatDuration } from "../../src/server/gateway/openai-wait-status.js";
import { isAlive, readSpawns, readViolations, runningDiffusions } from "../fakes/fake-gpu.mjs";
import { LLM_MODEL } from "../helpers/stack.js";
import { until } from "../helpers/until.js";
import { startServerStack, type ServerStack } from "../server/harness.js";

/**
 * A chat for an Ollama model sent while an image is being drawn waits for the GPU: OpenWebUI
 * sees "Waiting for the GPU…" in its status line, then Ollama's answer, which Ollama only
 * starts once sd-cli has exited.
 */

const OTHER_MODEL = "llama3.2:1b";

let s: ServerStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

type Chunk = {
  object?: string;
  choices?: { delta?: { content?: string }; finish_reason?: string | null }[];
  event?: { type: string; data: { description: string; done: boolean } };
  error?: { message: string; type: string };
};

async function waitingStack(server: { gatewayWaitStatus?: boolean } = {}, env: Record<string, string> = {}): Promise<ServerStack> {
  const stack = await startServerStack({
    ollama: { installed: [LLM_MODEL, OTHER_MODEL], resident: [LLM_MODEL] },
    // About a second of sampling: long enough to send a chat while it runs.
    sdEnv: { FAKE_SD_STEP_MS: "40" },
    server,
    env,
  });
  stack.stack.ollama.setResponder((req) => `${req.model} says: ${req.lastUserMessage}`);
  return stack;
}

/**
 * Starts an image job and resolves once it holds the GPU (sd-cli about to run or running),
 * with its answer still to come (wrapped: an async function would wait for it).
 */
async function drawing(stack: ServerStack): Promise<{ drawn: Promise<unknown> }> {
  const drawn = stack.client.images.generate({ prompt: "a red fox", size: "64x64", steps: 25, refine: false } as Parameters<typeof stack.client.images.generate>[0]);
  await until("the image job to hold the GPU", () => stack.stack.deps.scheduler.state().gpu.kind === "diffusion");
  return { drawn };
}

/** Sends a chat and reads its SSE as it comes; `onChunk` sees each parsed chunk on arrival. */
async function streamChat(url: string, body: unknown, onChunk: (chunk: Chunk) => void = () => undefined, signal?: AbortSignal) {
  const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal });
  const chunks: Chunk[] = [];
  const data: string[] = [];
  const decoder = new TextDecoder();
  let buffered = "";
  const reader = res.body!.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const payload = line.slice(6);
        data.push(payload);
        if (payload === "[DONE]") continue;
        const chunk = JSON.parse(payload) as Chunk;
        chunks.push(chunk);
        onChunk(chunk);
      }
    }
  }
  return { res, chunks, data };
}

const content = (chunks: Chunk[]) => chunks.map((c) => c.choices?.[0]?.delta?.content ?? "").join("");
const sdCliExited = (stack: ServerStack) => runningDiffusions(stack.stack.gpuDir).length === 0 && readSpawns(stack.stack.gpuDir).every((spawn) => !isAlive(spawn.pid));

describe("a streaming chat for an Ollama model waits for the GPU with a status line", () => {
  it("status chunks first, settled when the GPU is granted, then Ollama's answer, started after sd-cli exited", async () => {
    s = await waitingStack();
    const stack = s;
    const image = await drawing(stack);
    let answerStartedAfterSdCli: boolean | undefined;
    const { res, chunks, data } = await streamChat(stack.url, { model: OTHER_MODEL, stream: true, messages: [{ role: "user", content: "hello" }] }, (chunk) => {
      if (answerStartedAfterSdCli === undefined && chunk.event === undefined) answerStartedAfterSdCli = sdCliExited(stack);
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");

    const firstAnswer = chunks.findIndex((c) => c.event === undefined);
    const statuses = chunks.slice(0, firstAnswer);
    expect(statuses.length).toBeGreaterThanOrEqual(2);
    expect(chunks.slice(firstAnswer).every((c) => c.event === undefined)).toBe(true);
    expect(statuses[0]!.event).toEqual({ type: "status", data: { description: expect.stringMatching(/^Waiting for the GPU: an image is being drawn, about \d+ (s|min)$/), done: false } });
    expect(statuses.slice(0, -1).every((c) => c.event!.data.done === false)).toBe(true);
    expect(statuses.at(-1)!.event!.data).toEqual({ description: expect.stringMatching(/^Waited \d+ s for the GPU$/), done: true });
    // A status chunk is a valid chat chunk with an empty delta (OpenWebUI and the SDK both read it).
    expect(statuses[0]).toMatchObject({ object: "chat.completion.chunk", choices: [{ index: 0, delta: {}, finish_reason: null }] });

    expect(answerStartedAfterSdCli).toBe(true);
    expect(content(chunks)).toBe(`${OTHER_MODEL} says: hello`);
    expect(chunks.at(-1)!.choices![0]!.finish_reason).toBe("stop");
    expect(data.at(-1)).toBe("[DONE]");
    await image.drawn;
    expect(readViolations(stack.stack.gpuDir)).toEqual([]);
    expect(stack.stack.deps.scheduler.state().gpu).toEqual({ kind: "idle" });
  });

  it("the official SDK reads the same stream: status chunks carry no content, the answer is Ollama's", async () => {
    s = await waitingStack();
    const image = await drawing(s);
    const stream = await s.client.chat.completions.create({ model: LLM_MODEL, stream: true, messages: [{ role: "user", content: "what is a fox?" }] });
    let text = "";
    let statuses = 0;
    for await (const chunk of stream) {
      if ((chunk as Chunk).event) statuses += 1;
      text += chunk.choices[0]?.delta.content ?? "";
    }
    expect(statuses).toBeGreaterThanOrEqual(2);
    expect(text).toBe(`${LLM_MODEL} says: what is a fox?`);
    await image.drawn;
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });

  it("with GATEWAY_WAIT_STATUS=false: no status chunk, Ollama's stream only, still after sd-cli", async () => {
    s = await waitingStack({ gatewayWaitStatus: false });
    const stack = s;
    const image = await drawing(stack);
    let answerStartedAfterSdCli: boolean | undefined;
    const { res, chunks } = await streamChat(stack.url, { model: OTHER_MODEL, stream: true, messages: [{ role: "user", content: "hello" }] }, () => {
      answerStartedAfterSdCli ??= sdCliExited(stack);
    });
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    expect(chunks.some((c) => c.event !== undefined)).toBe(false);
    expect(answerStartedAfterSdCli).toBe(true);
    expect(content(chunks)).toBe(`${OTHER_MODEL} says: hello`);
    await image.drawn;
    expect(readViolations(stack.stack.gpuDir)).toEqual([]);
  });

  it("a non-streaming chat just waits, then gets Ollama's answer as it is", async () => {
    s = await waitingStack();
    const image = await drawing(s);
    const answer = await s.client.chat.completions.create({ model: OTHER_MODEL, messages: [{ role: "user", content: "hello" }] });
    expect(answer.choices[0]!.message.content).toBe(`${OTHER_MODEL} says: hello`);
    expect(sdCliExited(s)).toBe(true);
    await image.drawn;
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });

  it("an error from Ollama after the status line: an SSE error chunk in OpenAI's shape, then [DONE]", async () => {
    s = await waitingStack();
    const image = await drawing(s);
    const { res, chunks, data } = await streamChat(s.url, { model: "mistral:7b", stream: true, messages: [{ role: "user", content: "hello" }] });
    expect(res.status).toBe(200);
    expect(chunks[0]!.event!.data.done).toBe(false);
    expect(chunks.at(-1)).toEqual({ error: { message: "model 'mistral:7b' not found", type: "not_found_error", param: null, code: null } });
    expect(data.at(-1)).toBe("[DONE]");

    // The SDK turns it into an error, as it does for OpenAI's own stream errors.
    await image.drawn;
    const slow = await drawing(s);
    const stream = await s.client.chat.completions.create({ model: "mistral:7b", stream: true, messages: [{ role: "user", content: "hi" }] });
    await expect(
      (async () => {
        for await (const _ of stream) void _;
      })(),
    ).rejects.toBeInstanceOf(OpenAI.APIError);
    await slow.drawn;
    expect(s.stack.deps.scheduler.state().gpu).toEqual({ kind: "idle" });
  });

  it("a client that leaves while waiting leaves the queue; Ollama never hears of it", async () => {
    s = await waitingStack();
    const image = await drawing(s);
    const leave = new AbortController();
    const reading = streamChat(s.url, { model: OTHER_MODEL, stream: true, messages: [{ role: "user", content: "hello" }] }, () => leave.abort(), leave.signal);
    await expect(reading).rejects.toThrow();
    await until("the chat to leave the GPU queue", () => s!.stack.deps.scheduler.state().queue.length === 0);
    expect(s.stack.deps.scheduler.stats().rejected.aborted).toBe(1);
    await image.drawn;
    await s.stack.deps.scheduler.whenSettled();
    expect(s.stack.ollama.requests.filter((r) => r.body?.model === OTHER_MODEL)).toEqual([]);
    expect(s.stack.deps.scheduler.stats().grants.llm).toBe(0);

    // Without a status line too (the request is still waiting for its headers).
    const again = await drawing(s);
    const gone = new AbortController();
    const plain = fetch(`${s.url}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: OTHER_MODEL, messages: [{ role: "user", content: "hi" }] }), signal: gone.signal });
    await until("the chat to wait for the GPU", () => s!.stack.deps.scheduler.state().queue.some((job) => job.jobId.startsWith("openai-")));
    gone.abort();
    await expect(plain).rejects.toThrow();
    await until("the chat to leave the GPU queue", () => s!.stack.deps.scheduler.state().queue.length === 0);
    await again.drawn;
    await s.stack.deps.scheduler.whenSettled();
    expect(s.stack.ollama.requests.filter((r) => r.body?.model === OTHER_MODEL)).toEqual([]);
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });

  it("queue full: 429 in OpenAI's shape with Retry-After, before anything is streamed", async () => {
    s = await waitingStack({}, { MAX_QUEUE: "1" });
    const image = await drawing(s);
    const waiting = streamChat(s.url, { model: OTHER_MODEL, stream: true, messages: [{ role: "user", content: "first" }] });
    await until("the first chat to wait", () => s!.stack.deps.scheduler.state().queue.length === 1);
    const refused = await fetch(`${s.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: OTHER_MODEL, stream: true, messages: [{ role: "user", content: "second" }] }),
    });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(refused.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await refused.json()).toMatchObject({ error: { type: "rate_limit_error", code: "queue_full", param: null, message: expect.stringContaining("GPU queue is full") } });
    const err = await s.client.embeddings.create({ model: OTHER_MODEL, input: "x" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);

    expect(content((await waiting).chunks)).toBe(`${OTHER_MODEL} says: first`);
    await image.drawn;
  });
});

describe("the waiting line's text", () => {
  const measured = (meanMs: number) => ({ count: 3, meanMs, lastMs: meanMs, maxMs: meanMs });
  const none = { count: 0, meanMs: 0, lastMs: undefined, maxMs: 0 };
  const stats = (over: Partial<GpuSchedulerStats> = {}): GpuSchedulerStats => ({
    llm: { state: "unloaded", since: 0 },
    gpu: { kind: "idle" },
    queue: [],
    unloads: measured(2_000),
    reloads: measured(3_000),
    failures: { unloads: 0, reloads: 0, last: undefined },
    waits: { llm: none, diffusion: none },
    holds: { llm: measured(1_000), diffusion: measured(5_000) },
    grants: { llm: 0, diffusion: 0 },
    diffusionBatches: { count: 0, jobs: 0, lastSize: undefined, maxSize: 0 },
    rejected: { queueFull: 0, aborted: 0, closed: 0, conflicts: 0 },
    ...over,
  });
  const me = { jobId: "openai-me", phase: "llm" as const };
  const image = (n: number) => ({ jobId: `job-${n}`, phase: "diffusion" as const });

  it("image 2 of 3 in a batch, with the measured times", () => {
    const state: GpuSchedulerState = { llm: "unloaded", gpu: { kind: "diffusion", jobId: "job-2", since: 10_000 }, queue: [me, image(3)], batchJobs: 2, closing: false };
    // 5 s for the rest of image 2 (just started), 5 s for image 3, 3 s to reload: 13 s → "15 s".
    expect(describeGpuWait({ state, stats: stats(), maxBatch: 8, jobId: me.jobId, now: 10_000 })).toBe("Waiting for the GPU: image 2 of 3, about 15 s");
    // Half of image 2 done.
    expect(describeGpuWait({ state, stats: stats(), maxBatch: 8, jobId: me.jobId, now: 12_500 })).toBe("Waiting for the GPU: image 2 of 3, about 15 s");
    // A batch that may run one more image only: image 3 waits for the next one.
    expect(describeGpuWait({ state, stats: stats(), maxBatch: 2, jobId: me.jobId, now: 10_000 })).toBe("Waiting for the GPU: an image is being drawn, about 8 s");
  });

  it("images ahead while the LLM is still in VRAM; the LLM being loaded; nothing measured yet", () => {
    const ahead: GpuSchedulerState = { llm: "resident", gpu: { kind: "idle" }, queue: [image(1), image(2), me], batchJobs: undefined, closing: false };
    // unload 2 s + two images 10 s + reload 3 s.
    expect(describeGpuWait({ state: ahead, stats: stats({ llm: { state: "resident", since: 0 } }), maxBatch: 8, jobId: me.jobId, now: 0 })).toBe("Waiting for the GPU: 2 images ahead, about 15 s");
    const loading: GpuSchedulerState = { llm: "loading", gpu: { kind: "idle" }, queue: [me], batchJobs: undefined, closing: false };
    expect(describeGpuWait({ state: loading, stats: stats({ llm: { state: "loading", since: 1_000 } }), maxBatch: 8, jobId: me.jobId, now: 2_000 })).toBe("Waiting for the GPU: the language model is being loaded, about 2 s");
    const first: GpuSchedulerState = { llm: "unloaded", gpu: { kind: "diffusion", jobId: "job-1", since: 0 }, queue: [me], batchJobs: 1, closing: false };
    const fresh = stats({ unloads: none, reloads: none, holds: { llm: none, diffusion: none } });
    // Nothing measured: a minute for an image and 10 s for the reload, as the scheduler assumes.
    expect(describeGpuWait({ state: first, stats: fresh, maxBatch: 8, jobId: me.jobId, now: 0 })).toBe("Waiting for the GPU: an image is being drawn, about 2 min");
  });

  it("durations: seconds, steps of 5 s, minutes", () => {
    expect([0, 1_000, 9_200, 10_000, 11_000, 56_000, 61_000].map(formatDuration)).toEqual(["1 s", "1 s", "10 s", "10 s", "15 s", "60 s", "2 min"]);
    expect(describeGpuWaitOver(4_200)).toBe("Waited 5 s for the GPU");
  });
});
