import { Ollama } from "ollama";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readViolations } from "../fakes/fake-gpu.mjs";
import { LLM_MODEL, startStack, type ServedStack } from "../helpers/stack.js";

/**
 * The `ollama` npm client, unchanged but for its host (`${url}/ollama`), does what it does
 * against Ollama itself: the gateway relays every route byte for byte, streams included,
 * and every call that runs the model takes (and gives back) an LLM lease.
 */

let stack: ServedStack;
let ollama: Ollama;

beforeAll(async () => {
  stack = await startStack({ server: {} });
  ollama = new Ollama({ host: `${stack.url}/ollama` });
});
afterAll(async () => {
  await stack?.close();
});

describe("the ollama npm client through /ollama", () => {
  it("lists the installed models (/api/tags) as Ollama does", async () => {
    const direct = await (await fetch(`${stack.ollama.url}/api/tags`)).json();
    const listed = await ollama.list();
    expect(listed).toEqual(direct);
    expect(listed.models.map((m) => m.name)).toContain(LLM_MODEL);
  });

  it("chats without streaming: one answer, done, with Ollama's fields", async () => {
    const answer = await ollama.chat({ model: LLM_MODEL, messages: [{ role: "user", content: "hello there" }], stream: false });
    expect(answer.message).toMatchObject({ role: "assistant", content: "You said: hello there" });
    expect(answer.done).toBe(true);
    expect(answer.done_reason).toBe("stop");
    expect(answer.eval_count).toBeGreaterThan(0);
  });

  it("chats streaming: every chunk, in order, ending with done", async () => {
    const stream = await ollama.chat({ model: LLM_MODEL, messages: [{ role: "user", content: "tell me about foxes in the snow" }], stream: true });
    const parts: string[] = [];
    let last: { done: boolean; done_reason?: string } | undefined;
    for await (const part of stream) {
      parts.push(part.message.content);
      last = part;
    }
    expect(parts.join("")).toBe("You said: tell me about foxes in the snow");
    expect(parts.length).toBeGreaterThan(3);
    expect(last).toMatchObject({ done: true, done_reason: "stop" });
  });

  it("embeds (loading the model as Ollama does)", async () => {
    const loadsBefore = stack.ollama.stats.load;
    const answer = await ollama.embed({ model: LLM_MODEL, input: ["a red fox", "a grey wolf"] });
    expect(answer.model).toBe(LLM_MODEL);
    expect(answer.embeddings).toHaveLength(2);
    for (const vector of answer.embeddings) expect(Math.hypot(...vector)).toBeCloseTo(1, 5);
    expect(answer.embeddings[0]).not.toEqual(answer.embeddings[1]);
    expect(stack.ollama.stats.load).toBe(loadsBefore + 1);
  });

  it("shows a model, and 404s one that is not installed in Ollama's words", async () => {
    const shown = await ollama.show({ model: LLM_MODEL });
    expect(shown.details).toMatchObject({ family: "qwen2", quantization_level: "Q4_K_M" });
    await expect(ollama.show({ model: "nope:1b" })).rejects.toMatchObject({ status_code: 404, error: "model 'nope:1b' not found" });
  });

  it("lists what is loaded (/api/ps)", async () => {
    const ps = await ollama.ps();
    expect(ps.models.map((m) => m.name)).toEqual([LLM_MODEL]);
    expect(ps.models[0]!.size_vram).toBeGreaterThan(0);
  });

  it("leaves no lease behind and never breaks the invariant", async () => {
    await stack.deps.scheduler.whenSettled();
    expect(stack.deps.scheduler.state()).toMatchObject({ gpu: { kind: "idle" }, queue: [] });
    expect(stack.deps.scheduler.stats().grants.llm).toBeGreaterThanOrEqual(3);
    expect(readViolations(stack.gpuDir)).toEqual([]);
  });
});
