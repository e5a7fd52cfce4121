import { afterEach, describe, expect, it } from "vitest";
import { ChatReplier, ReplyInterruptedError } from "../../../src/llm/chat-replier.js";
import { silentLlmLogger } from "../../../src/llm/logger.js";
import type { LlmConfig } from "../../../src/llm/ollama-client.js";
import { startFakeOllama, type FakeOllama, type FakeOllamaOptions, type RecordedRequest } from "../../fakes/ollama-server.js";
import { until } from "../../helpers/until.js";
import { llmConfig } from "./llm-config.js";

let ollama: FakeOllama | undefined;
afterEach(async () => {
  await ollama?.close();
  ollama = undefined;
});

async function fakeOllama(opts: FakeOllamaOptions = {}): Promise<FakeOllama> {
  ollama = await startFakeOllama(opts);
  return ollama;
}

const replier = (llm: LlmConfig) => new ChatReplier(llm, { logger: silentLlmLogger });
const chats = (fake: FakeOllama): RecordedRequest[] => fake.requests.filter((r) => r.kind === "chat");
const messagesOf = (r: RecordedRequest) => r.body?.messages as { role: string; content: string }[];

/** Each piece with the time it arrived. */
function collector() {
  const pieces: { text: string; at: number }[] = [];
  return { pieces, onText: (text: string) => pieces.push({ text, at: Date.now() }) };
}

const ANSWER = "Foxes are omnivores: they eat berries, insects and small mammals.";

describe("ChatReplier.reply", () => {
  it("streams the words as Ollama sends them: plain text, think:false, the configured keep_alive and num_ctx", async () => {
    const fake = await fakeOllama({ responder: () => ANSWER, chunkDelayMs: 40 });
    const { pieces, onText } = collector();
    const reply = await replier(llmConfig(fake.url)).reply(
      { request: "what do foxes eat?", history: [{ role: "user", content: "hello" }, { role: "assistant", content: "Hi!" }] },
      { onText },
    );

    expect(reply).toMatchObject({ text: ANSWER, fellBack: false });
    expect(pieces.length).toBeGreaterThan(5);
    expect(pieces.map((p) => p.text).join("")).toBe(ANSWER);
    // One piece at a time, as Ollama wrote them, not all at the end.
    expect(pieces.at(-1)!.at - pieces[0]!.at).toBeGreaterThanOrEqual(40 * (pieces.length - 2));

    const [req] = chats(fake);
    expect(req!.body).toMatchObject({ model: "qwen2.5:3b", think: false, keep_alive: -1, stream: true, options: { num_ctx: 8192 } });
    expect(req!.body?.format).toBeUndefined();
    const sent = messagesOf(req!);
    expect(sent.map((m) => m.role)).toEqual(["system", "user", "assistant", "user"]);
    expect(sent[0]!.content).toMatch(/DiffuGen/);
    expect(sent.at(-1)).toEqual({ role: "user", content: "what do foxes eat?" });
  });

  it("as-written: the message alone, no system prompt of ours", async () => {
    const fake = await fakeOllama({ responder: () => '{ "title": "🦊 Fox" }' });
    const reply = await replier(llmConfig(fake.url)).reply({ request: "### Task:\nTitle this chat.", voice: "as-written" });
    expect(reply.text).toBe('{ "title": "🦊 Fox" }');
    expect(messagesOf(chats(fake)[0]!)).toEqual([{ role: "user", content: "### Task:\nTitle this chat." }]);
  });

  it("drops leading blank lines from the pieces and the whole alike", async () => {
    const fake = await fakeOllama({ responder: () => "\n\n  Hello there, fox friend." });
    const { pieces, onText } = collector();
    const reply = await replier(llmConfig(fake.url)).reply({ request: "hi" }, { onText });
    expect(reply.text).toBe("Hello there, fox friend.");
    expect(pieces.map((p) => p.text).join("")).toBe(reply.text);
  });

  it("apologises, saying why, when Ollama is down or lacks the model: nothing was said yet", async () => {
    const fake = await fakeOllama();
    await fake.setFault({ kind: "down" });
    const { pieces, onText } = collector();
    const down = await replier(llmConfig(fake.url)).reply({ request: "hello" }, { onText });
    expect(down).toMatchObject({ fellBack: true, warning: expect.stringMatching(/not reachable/) });
    expect(down.text).toMatch(/^I can't answer right now: Ollama is not reachable/);
    expect(pieces).toEqual([]);

    await fake.setFault(null);
    const missing = await replier(llmConfig(fake.url, { model: "llama3.2:1b" })).reply({ request: "hello" });
    expect(missing.warning).toMatch(/ollama pull llama3\.2:1b/);
  });

  it("an empty answer is an apology too", async () => {
    const fake = await fakeOllama({ responder: () => "" });
    expect(await replier(llmConfig(fake.url)).reply({ request: "hello" })).toMatchObject({ fellBack: true, warning: expect.stringMatching(/empty reply/) });
  });

  it("a reply broken off after its first words is an error: they cannot be taken back", async () => {
    const fake = await fakeOllama({ responder: () => ANSWER });
    await fake.setFault({ kind: "error-mid-stream", error: "llama runner process has terminated" });
    const { pieces, onText } = collector();
    const err = await replier(llmConfig(fake.url))
      .reply({ request: "what do foxes eat?" }, { onText })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReplyInterruptedError);
    expect((err as Error).message).toMatch(/stopped in the middle of its reply: .*llama runner process has terminated/);
    expect(pieces.map((p) => p.text)).toEqual(["Foxes "]);
  });

  it("gives up after the refine timeout of silence, and hangs up on Ollama", async () => {
    const fake = await fakeOllama({ chatDelayMs: 5_000 });
    const started = Date.now();
    const reply = await replier(llmConfig(fake.url, { refineTimeoutMs: 300 })).reply({ request: "hello" });
    expect(reply).toMatchObject({ fellBack: true, warning: expect.stringMatching(/did not answer within 300 ms/) });
    expect(Date.now() - started).toBeLessThan(1_500);
    await until("Ollama to see the hang-up", () => fake.stats.cancelled === 1);
  });

  it("silence is counted between words, not over the whole reply: a long answer that keeps coming is not cut", async () => {
    // 11 pieces 100 ms apart: over a second in all, never 300 ms without a word.
    const fake = await fakeOllama({ responder: () => ANSWER, chunkDelayMs: 100 });
    const reply = await replier(llmConfig(fake.url, { refineTimeoutMs: 300 })).reply({ request: "what do foxes eat?" });
    expect(reply).toMatchObject({ text: ANSWER, fellBack: false });
  });

  it("the caller's abort mid-reply rejects with its reason and hangs up on Ollama", async () => {
    const fake = await fakeOllama({ responder: () => ANSWER, chunkDelayMs: 100 });
    const ac = new AbortController();
    const result = replier(llmConfig(fake.url)).reply({ request: "what do foxes eat?" }, { signal: ac.signal, onText: () => ac.abort() });
    await expect(result).rejects.toMatchObject({ name: "AbortError" });
    await until("Ollama to see the hang-up", () => fake.stats.cancelled === 1);
  });
});
