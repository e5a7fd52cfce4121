import { afterEach, describe, expect, it } from "vitest";
import { silentLlmLogger } from "../../../src/llm/logger.js";
import type { LlmConfig } from "../../../src/llm/ollama-client.js";
import { PromptRefiner } from "../../../src/llm/prompt-refiner.js";
import { startFakeOllama, type FakeOllama, type FakeOllamaOptions, type RecordedRequest } from "../../fakes/ollama-server.js";

let ollama: FakeOllama | undefined;

afterEach(async () => {
  await ollama?.close();
  ollama = undefined;
});

async function fakeOllama(opts: FakeOllamaOptions = {}): Promise<FakeOllama> {
  ollama = await startFakeOllama(opts);
  return ollama;
}

function llmConfig(url: string, overrides: Partial<LlmConfig> = {}): LlmConfig {
  return {
    baseUrl: url,
    model: "qwen2.5:3b",
    keepAlive: "10m",
    numCtx: 8192,
    refineTimeoutMs: 5_000,
    unloadTimeoutMs: 3_000,
    nvidiaSmi: undefined,
    ...overrides,
  };
}

function refiner(llm: LlmConfig): PromptRefiner {
  return new PromptRefiner(llm, { logger: silentLlmLogger });
}

const answer = (prompt: string, negative_prompt = "") => () => JSON.stringify({ prompt, negative_prompt });
const lastChat = (fake: FakeOllama): RecordedRequest => fake.requests.filter((r) => r.kind === "chat").at(-1)!;
const messagesOf = (r: RecordedRequest) => r.body?.messages as { role: string; content: string }[];

describe("PromptRefiner.refine", () => {
  it("asks Qwen for structured output with think:false, the configured keep_alive and num_ctx", async () => {
    const fake = await fakeOllama();
    const result = await refiner(llmConfig(fake.url)).refine({ request: "a cat on a roof", family: "sdxl" });
    expect(result).toMatchObject({ prompt: "a cat on a roof, highly detailed", negativePrompt: "blurry, lowres", fellBack: false });
    expect(result.warning).toBeUndefined();

    const req = lastChat(fake);
    expect(req.body).toMatchObject({ model: "qwen2.5:3b", think: false, keep_alive: "10m", stream: true, options: { num_ctx: 8192 } });
    expect(req.body?.format).toMatchObject({ type: "object", required: ["prompt", "negative_prompt"] });
    const [system, user] = messagesOf(req);
    expect(system).toMatchObject({ role: "system" });
    expect(system?.content).toContain("Stable Diffusion XL");
    expect(user).toEqual({ role: "user", content: "a cat on a roof" });
  });

  it("asks for sentences for FLUX and never passes FLUX a negative prompt", async () => {
    const fake = await fakeOllama();
    const result = await refiner(llmConfig(fake.url)).refine({ request: "a cat on a roof", family: "flux" });
    expect(result.negativePrompt).toBe("");
    expect(messagesOf(lastChat(fake))[0]?.content).toMatch(/natural, descriptive sentences/);
  });

  it("keeps the user's LoRA tags and weights even when the model drops or changes them", async () => {
    const fake = await fakeOllama({
      responder: answer("a red fox in a misty forest at dawn, pixel art, <lora:pixelart:1.0>, <lora:invented:0.5>", "blurry"),
    });
    const result = await refiner(llmConfig(fake.url)).refine({
      request: "a (red fox:1.3) in a forest, [fog] <lora:pixelart:0.8> <lora:detail_tweaker:0.5>",
      family: "sd1",
    });
    expect(result.fellBack).toBe(false);
    expect(result.prompt).toContain("(red fox:1.3)");
    expect(result.prompt).toContain("[fog]");
    expect(result.prompt).toContain("<lora:pixelart:0.8>");
    expect(result.prompt).toContain("<lora:detail_tweaker:0.5>");
    expect(result.prompt).not.toContain("<lora:pixelart:1.0>");
    expect(result.prompt).not.toContain("invented");
    expect(result.prompt).toMatch(/^a \(red fox:1\.3\) in a misty forest/);
  });

  it("refines a follow-up from the previous prompt and the conversation", async () => {
    const fake = await fakeOllama({
      responder: (req) => {
        const system = req.messages[0]?.content ?? "";
        const previous = /made from this prompt:\n(.*)\n/.exec(system)?.[1] ?? "?";
        return JSON.stringify({ prompt: `${previous}, dark stormy night`, negative_prompt: "" });
      },
    });
    const result = await refiner(llmConfig(fake.url)).refine({
      request: "make it darker",
      family: "sdxl",
      previousPrompt: "a lighthouse on a cliff at sunset, oil painting <lora:oil:0.7>",
      history: [
        { role: "user", content: "draw a lighthouse at sunset" },
        { role: "assistant", content: "Here is your lighthouse." },
        { role: "user", content: "make it darker" },
      ],
    });
    expect(result.fellBack).toBe(false);
    expect(result.prompt).toBe("a lighthouse on a cliff at sunset, oil painting <lora:oil:0.7>, dark stormy night");
    const sent = messagesOf(lastChat(fake));
    expect(sent.map((m) => m.role)).toEqual(["system", "user", "assistant", "user"]);
    expect(sent.at(-1)?.content).toBe("make it darker");
    expect(sent[1]?.content).toBe("draw a lighthouse at sunset");
  });

  it("falls back to the user's prompt with a warning when the answer is not valid JSON", async () => {
    const fake = await fakeOllama();
    await fake.setFault({ kind: "invalid-json" });
    const result = await refiner(llmConfig(fake.url)).refine({ request: "a cat <lora:cute:0.6>", family: "sd1" });
    expect(result).toMatchObject({ prompt: "a cat <lora:cute:0.6>", fellBack: true });
    expect(result.warning).toMatch(/not valid JSON/);
    expect(result.negativePrompt).not.toBe("");
  });

  it("falls back when Ollama breaks off the stream with an error line", async () => {
    const fake = await fakeOllama();
    await fake.setFault({ kind: "error-mid-stream", error: "llama runner process has terminated" });
    const result = await refiner(llmConfig(fake.url)).refine({ request: "a cat", family: "sdxl" });
    expect(result).toMatchObject({ prompt: "a cat", fellBack: true });
    expect(result.warning).toMatch(/llama runner process has terminated/);
  });

  it("falls back when Ollama is down", async () => {
    const fake = await fakeOllama();
    await fake.setFault({ kind: "down" });
    const result = await refiner(llmConfig(fake.url)).refine({ request: "a cat", family: "sdxl" });
    expect(result).toMatchObject({ prompt: "a cat", fellBack: true });
    expect(result.warning).toMatch(/not reachable/);
  });

  it("falls back when the LLM is not installed, saying how to install it", async () => {
    const fake = await fakeOllama({ installed: ["llama3.2:1b"] });
    const result = await refiner(llmConfig(fake.url)).refine({ request: "a cat", family: "sdxl" });
    expect(result.fellBack).toBe(true);
    expect(result.warning).toMatch(/ollama pull qwen2\.5:3b/);
  });

  it("falls back within about the refine timeout when the LLM is slow, and cancels the request", async () => {
    const fake = await fakeOllama({ chatDelayMs: 5_000 });
    const started = Date.now();
    const result = await refiner(llmConfig(fake.url, { refineTimeoutMs: 300 })).refine({ request: "a cat", family: "sdxl" });
    const elapsed = Date.now() - started;
    expect(result).toMatchObject({ prompt: "a cat", fellBack: true });
    expect(result.warning).toMatch(/within 300 ms/);
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(1_500);
    // The abandoned request is hung up on, so Ollama stops generating (and can unload).
    await new Promise((r) => setTimeout(r, 50));
    expect(fake.stats.cancelled).toBe(1);
  });

  it("rejects (no fallback) when the caller aborts", async () => {
    const fake = await fakeOllama({ chatDelayMs: 5_000 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const started = Date.now();
    await expect(refiner(llmConfig(fake.url)).refine({ request: "a cat", family: "sdxl" }, ac.signal)).rejects.toMatchObject({
      name: "AbortError",
    });
    expect(Date.now() - started).toBeLessThan(1_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(fake.stats.cancelled).toBe(1);
    await expect(refiner(llmConfig(fake.url)).refine({ request: "a cat", family: "sdxl" }, AbortSignal.abort())).rejects.toThrow();
  });

  it("does not use a prompt that replaced the subject", async () => {
    const fake = await fakeOllama({ responder: answer("a lighthouse by the sea at sunset, oil painting") });
    const result = await refiner(llmConfig(fake.url)).refine({ request: "a red fox", family: "sdxl" });
    expect(result).toMatchObject({ prompt: "a red fox", fellBack: true });
    expect(result.warning).toMatch(/subject/);
  });

  it("keeps a negative prompt the user gave", async () => {
    const fake = await fakeOllama();
    const result = await refiner(llmConfig(fake.url)).refine({ request: "a cat", family: "sd1", negativePrompt: "dogs, blurry" });
    expect(result.negativePrompt).toBe("dogs, blurry, lowres");
  });
});

describe("PromptRefiner.decide (chat)", () => {
  it("draws when the user asks for a picture", async () => {
    const fake = await fakeOllama();
    const decision = await refiner(llmConfig(fake.url)).decide({ request: "draw a cat in space", family: "flux" });
    expect(decision).toMatchObject({ intent: "draw", fellBack: false, negativePrompt: "" });
    expect(decision.intent === "draw" && decision.prompt).toContain("cat in space");
    expect(lastChat(fake).body?.format).toMatchObject({ properties: { intent: { enum: ["draw", "reply"] } } });
  });

  it("replies when the user is just talking: only the decision, the words are written afterwards (streamed)", async () => {
    const fake = await fakeOllama();
    const decision = await refiner(llmConfig(fake.url)).decide({ request: "what is the capital of France?", family: "sdxl" });
    expect(decision).toEqual({ intent: "reply", fellBack: false, durationMs: expect.any(Number) });
    // A structured answer arrives whole: the schema does not ask for the reply's words.
    const format = lastChat(fake).body?.format as { properties: Record<string, unknown> };
    expect(Object.keys(format.properties).sort()).toEqual(["intent", "negative_prompt", "prompt"]);
  });

  it("decides by wording when Ollama is down: draw requests still draw, the rest gets an apology", async () => {
    const fake = await fakeOllama();
    await fake.setFault({ kind: "down" });
    const r = refiner(llmConfig(fake.url));
    const draw = await r.decide({ request: "paint a sunset over the sea", family: "sdxl" });
    expect(draw).toMatchObject({ intent: "draw", prompt: "paint a sunset over the sea", fellBack: true });
    const followUp = await r.decide({ request: "make it darker", family: "sdxl", previousPrompt: "a sunset over the sea" });
    expect(followUp).toMatchObject({ intent: "draw", prompt: "a sunset over the sea, make it darker", fellBack: true });
    const reply = await r.decide({ request: "hello, how are you?", family: "sdxl" });
    expect(reply).toMatchObject({ intent: "reply", fellBack: true, reply: expect.stringMatching(/^I can't answer right now: Ollama is not reachable/) });
    expect(reply.warning).toMatch(/not reachable/);
  });

  it("falls back to drawing the user's words when the model chose draw but wrote no prompt", async () => {
    const fake = await fakeOllama({ responder: () => JSON.stringify({ intent: "draw" }) });
    const decision = await refiner(llmConfig(fake.url)).decide({ request: "a photo of a cat", family: "sdxl" });
    expect(decision).toMatchObject({ intent: "draw", prompt: "a photo of a cat", fellBack: true });
  });
});
