import { afterEach, describe, expect, it } from "vitest";
import { readSpawns, readViolations } from "../fakes/fake-gpu.mjs";
import { until } from "../helpers/until.js";
import { parseSse, pngSize, postJson, startServerStack, type ServerStack } from "./harness.js";

let s: ServerStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

type Chunk = {
  id: string;
  object: string;
  choices: { index: number; delta: { role?: string; content?: string; reasoning_content?: string; images?: { type: string; image_url: { url: string } }[] }; finish_reason: string | null }[];
  event?: { type: string; data: { description: string; done: boolean } };
  usage?: { total_tokens: number };
};

const draw = { model: "diffugen", size: "64x64", steps: 4 };
const REPLY = "Hi! Ask me to draw something.";

describe("POST /v1/chat/completions (a chat model that draws)", () => {
  it("streams status events, a reasoning block, the image once (delta.images + markdown), stop, usage, [DONE]", async () => {
    s = await startServerStack();
    const stream = await s.client.chat.completions.create({
      ...draw,
      messages: [{ role: "user", content: "draw a red fox in the snow" }],
      stream: true,
      stream_options: { include_usage: true },
    } as Parameters<typeof s.client.chat.completions.create>[0] & { stream: true });
    const chunks: Chunk[] = [];
    for await (const chunk of stream) chunks.push(chunk as unknown as Chunk);

    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: "assistant", content: "" });
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);

    const statuses = chunks.filter((c) => c.event?.type === "status").map((c) => c.event!.data);
    expect(statuses.some((d) => /^Sampling 2\/4, \d+ s left$/.test(d.description) && !d.done)).toBe(true);
    expect(statuses.at(-1)).toMatchObject({ done: true });
    expect(statuses.filter((d) => d.done)).toHaveLength(1);
    // A status chunk carries an empty delta, never content.
    for (const c of chunks.filter((c) => c.event)) expect(c.choices[0]!.delta).toEqual({});

    const reasoning = chunks.map((c) => c.choices[0]?.delta.reasoning_content ?? "").join("");
    expect(reasoning).toContain("Prompt: draw a red fox in the snow, highly detailed");
    expect(reasoning).toMatch(/Model: sd15 · 64×64 · 4 steps · .* seed \d+/);

    const imageChunks = chunks.filter((c) => c.choices[0]?.delta.images);
    expect(imageChunks).toHaveLength(1);
    const delta = imageChunks[0]!.choices[0]!.delta;
    expect(delta.content).toBeUndefined();
    const url = delta.images![0]!.image_url.url;
    expect(url).toMatch(/^data:image\/png;base64,/);
    expect(pngSize(Buffer.from(url.split(",")[1]!, "base64"))).toEqual({ width: 64, height: 64 });

    const content = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    expect(content).toMatch(new RegExp(`^!\\[draw a red fox in the snow, highly detailed\\]\\(${s.url}/images/[^)]+\\.png\\)`));
    const link = content.match(/\((http[^)]+)\)/)![1]!;
    expect((await fetch(link)).headers.get("content-type")).toBe("image/png");

    const finish = chunks.filter((c) => c.choices[0]?.finish_reason === "stop");
    expect(finish).toHaveLength(1);
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage!.total_tokens).toBeGreaterThan(0);
    // Only the image chunk is big.
    for (const c of chunks) if (c !== imageChunks[0]) expect(JSON.stringify(c).length).toBeLessThan(1000);
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });

  it("the raw stream is data: lines only (as OpenAI's), ends with data: [DONE], with anti-buffering headers", async () => {
    s = await startServerStack();
    const res = await postJson(`${s.url}/v1/chat/completions`, { ...draw, stream: true, messages: [{ role: "user", content: "paint a cat" }] });
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(res.headers.get("cache-control")).toBe("no-cache, no-transform");
    expect(res.headers.get("x-accel-buffering")).toBe("no");
    const text = await res.text();
    const { messages } = parseSse(text);
    expect(messages.at(-1)!.data).toBe("[DONE]");
    expect(messages.every((m) => m.id === undefined && m.event === undefined)).toBe(true);
    expect(text.split("\n").filter((line) => line !== "" && !line.startsWith("data: ") && !line.startsWith(":"))).toEqual([]);
  });

  it("non-streaming: one chat.completion with the markdown image, images and reasoning", async () => {
    s = await startServerStack();
    const res = await s.client.chat.completions.create({ ...draw, model: "diffugen:sd15", messages: [{ role: "user", content: "draw a lighthouse" }] } as Parameters<
      typeof s.client.chat.completions.create
    >[0] & { stream?: false });
    expect(res.object).toBe("chat.completion");
    expect(res.model).toBe("diffugen:sd15");
    const message = res.choices[0]!.message as typeof res.choices[0]["message"] & { reasoning_content?: string; images?: { image_url: { url: string } }[] };
    expect(res.choices[0]!.finish_reason).toBe("stop");
    expect(message.content).toMatch(/^!\[draw a lighthouse, highly detailed\]\(http:\/\/127\.0\.0\.1:\d+\/images\/[^)]+\)/);
    expect(message.images![0]!.image_url.url).toMatch(/^data:image\/png;base64,/);
    expect(message.reasoning_content).toContain("Model: sd15");
  });

  it("replies in words when no picture was asked for: the words stream as the LLM writes them, no sd-cli", async () => {
    s = await startServerStack({
      ollama: { responder: (req) => (req.format ? JSON.stringify({ intent: "reply" }) : REPLY), chunkDelayMs: 60 },
    });
    const stream = await s.client.chat.completions.create({
      model: "diffugen",
      messages: [{ role: "user", content: "hello" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const pieces: { text: string; at: number }[] = [];
    const chunks: Chunk[] = [];
    let reasoning = "";
    for await (const chunk of stream) {
      chunks.push(chunk as unknown as Chunk);
      const delta = chunk.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
      if (delta?.content) pieces.push({ text: delta.content, at: Date.now() });
      reasoning += delta?.reasoning_content ?? "";
    }
    // Each piece in a chunk of its own, as Ollama sent it, the whole never sent again.
    expect(pieces.map((p) => p.text)).toEqual(["Hi! ", "Ask ", "me ", "to ", "draw ", "something."]);
    expect(pieces.at(-1)!.at - pieces[0]!.at).toBeGreaterThanOrEqual(60 * 4);
    expect(reasoning).toBe("");
    // The status line as before: what the job is doing, then settled once.
    const statuses = chunks.filter((c) => c.event?.type === "status").map((c) => c.event!.data);
    expect(statuses).toEqual([
      { description: "Reading your message", done: false },
      { description: "Done", done: false },
      { description: "Done", done: true },
    ]);
    expect(chunks.filter((c) => c.choices[0]?.finish_reason === "stop")).toHaveLength(1);
    expect(chunks.at(-1)!.usage!.total_tokens).toBeGreaterThan(0);
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);
    expect(s.stack.ollama.stats.unload).toBe(0);
  });

  it("a reply without stream: the whole text in one chat.completion", async () => {
    s = await startServerStack({ ollama: { responder: (req) => (req.format ? JSON.stringify({ intent: "reply" }) : REPLY) } });
    const res = await s.client.chat.completions.create({ model: "diffugen", messages: [{ role: "user", content: "hello" }] });
    expect(res.choices[0]!.message.content).toBe(REPLY);
    expect(res.choices[0]!.finish_reason).toBe("stop");
  });

  it("a client hanging up mid-reply stops the LLM: Ollama is hung up on, the GPU free, the job cancelled", async () => {
    s = await startServerStack({
      ollama: { responder: (req) => (req.format ? JSON.stringify({ intent: "reply" }) : "one two three four five six seven eight nine ten"), chunkDelayMs: 150 },
    });
    const res = await postJson(`${s.url}/v1/chat/completions`, { model: "diffugen", stream: true, messages: [{ role: "user", content: "count to ten" }] });
    const jobId = res.headers.get("x-diffugen-job-id")!;
    const reader = res.body!.getReader();
    let seen = "";
    while (!seen.includes('"content":"one ')) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended before the first word: ${seen}`);
      seen += new TextDecoder().decode(value);
    }
    // The first word is here, nine more to come: hang up.
    await reader.cancel();

    await until("Ollama to see the hang-up", () => s!.stack.ollama.stats.cancelled === 1);
    await s.stack.deps.scheduler.whenSettled();
    expect(s.stack.deps.scheduler.state().gpu).toEqual({ kind: "idle" });
    const job = await until("the job to end", async () => {
      const body = (await (await fetch(`${s!.url}/v1/jobs/${jobId}`)).json()) as { status: string };
      return body.status !== "running" && body;
    });
    expect(job.status).toBe("cancelled");
  });

  it("a follow-up finds the previous picture's prompt in the conversation and gives it to the LLM", async () => {
    s = await startServerStack();
    const first = await s.client.chat.completions.create({ ...draw, messages: [{ role: "user", content: "draw a [red] fox" }] } as Parameters<
      typeof s.client.chat.completions.create
    >[0] & { stream?: false });
    const answer = first.choices[0]!.message.content!;
    expect(answer).toContain("\\[red\\]");

    s.stack.ollama.requests.length = 0;
    await s.client.chat.completions.create({
      ...draw,
      messages: [
        { role: "user", content: "draw a [red] fox" },
        { role: "assistant", content: answer },
        { role: "user", content: "now make it darker" },
      ],
    } as Parameters<typeof s.client.chat.completions.create>[0] & { stream?: false });
    const sent = JSON.stringify(s.stack.ollama.requests.filter((r) => r.kind === "chat").map((r) => r.body));
    expect(sent).toContain("draw a [red] fox, highly detailed");
    // The LLM reads the prompt, never the image URL.
    expect(sent).not.toContain("/images/");
  });

  it("a drawing that fails mid-stream ends with an error the SDK throws", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_CRASH_AT_STEP: "2", FAKE_SD_CRASH_MODE: "exit" } });
    const stream = await s.client.chat.completions.create({ ...draw, messages: [{ role: "user", content: "draw a fox" }], stream: true } as Parameters<
      typeof s.client.chat.completions.create
    >[0] & { stream: true });
    const err = await (async () => {
      for await (const _ of stream) void _;
    })().catch((e: unknown) => e);
    expect(err).toMatchObject({ error: { code: "sd_failed" } });
    await s.stack.deps.scheduler.whenSettled();
    expect(s.stack.ollama.listed()).toContain("qwen2.5:3b");
  });
});
