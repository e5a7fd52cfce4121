import path from "node:path";
import { describe, expect, it } from "vitest";
import type { JobOutcome } from "../../../src/jobs/index.js";
import { ApiError } from "../../../src/server/errors.js";
import { chatAnswer } from "../../../src/server/format/chat-answer.js";
import { roughTokens } from "../../../src/server/format/chat-completions.js";
import { chatStream, type ChatStreamOptions } from "../../../src/server/format/chat-stream.js";
import type { Frame } from "../../../src/server/format/stream-formatter.js";
import { fakeImageData, framesOf, outcomeOf, sequence } from "./sequences.js";
import { imageLinks } from "../../../src/server/image-links.js";

const meta = { id: "chatcmpl-test", created: 1_700_000_000, model: "diffugen" };
/** The job's start, then its answer 12.34 s later. */
const clock = () => {
  const times = [0, 12_340];
  return () => times.shift() ?? 12_340;
};
const chatParams = { prompt: "messages", width: "size", height: "size", model: "model" };
const options = (more: Partial<ChatStreamOptions> = {}): ChatStreamOptions => ({
  meta,
  links: { ...imageLinks("http://h"), embed: true },
  includeUsage: true,
  promptTokens: 7,
  params: chatParams,
  clock: clock(),
  ...more,
});

type Chunk = {
  id: string;
  object: string;
  choices: { delta: { role?: string; content?: string; reasoning_content?: string; images?: { image_url: { url: string } }[] }; finish_reason: string | null }[];
  event?: { type: string; data: { description: string; done: boolean } };
  usage?: { completion_tokens: number; total_tokens: number };
  error?: { message: string; type: string; param: string | null; code: string | null };
};
const chunks = (frames: Frame[]) => frames.filter((f) => f.data !== "[DONE]").map((f) => f.data as Chunk);
const deltas = (frames: Frame[]) => chunks(frames).map((c) => c.choices[0]?.delta ?? {});
const statuses = (frames: Frame[]) => chunks(frames).flatMap((c) => (c.event ? [c.event.data] : []));

describe("the chat stream, over recorded jobs", () => {
  it("a drawing: role, deduplicated status lines, the reasoning block, the picture once, the link, stop, usage, [DONE]", async () => {
    const recorded = sequence("chat-draw");
    const outcome = outcomeOf(recorded).outcome;
    if (outcome.kind !== "images") throw new Error("expected images");
    const { frames, imagesRead } = await framesOf(recorded, chatStream(options()));

    // data: lines only, as OpenAI's.
    expect(frames.every((f) => f.seq === undefined && f.event === undefined)).toBe(true);
    expect(deltas(frames)[0]).toEqual({ role: "assistant", content: "" });
    expect(chunks(frames).every((c) => c.id === meta.id)).toBe(true);

    const lines = statuses(frames);
    for (let i = 1; i < lines.length; i++) expect(lines[i]!.description).not.toBe(lines[i - 1]!.description);
    expect(lines.some((l) => /^Sampling 2\/3, \d+ s left$/.test(l.description))).toBe(true);
    expect(lines.filter((l) => l.done)).toEqual([{ description: "Image ready in 12.3 s", done: true }]);
    expect(lines.at(-1)!.done).toBe(true);
    for (const c of chunks(frames).filter((c) => c.event)) expect(c.choices[0]!.delta).toEqual({});

    const reasoning = deltas(frames).map((d) => d.reasoning_content ?? "").join("");
    const { params } = outcome;
    expect(reasoning).toBe(
      `Prompt: ${outcome.prompt}\nNegative prompt: ${outcome.negativePrompt}\n` +
        `Model: sd15 · 64×64 · 3 steps · cfg ${params.cfgScale} · ${params.samplingMethod} · seed ${params.seed}\n`,
    );

    const pictures = deltas(frames).filter((d) => d.images);
    expect(imagesRead).toBe(1);
    expect(pictures).toEqual([{ images: [{ type: "image_url", image_url: { url: `data:image/png;base64,${fakeImageData(0)}` } }] }]);
    const content = deltas(frames).map((d) => d.content ?? "").join("");
    expect(content).toBe(`![${outcome.prompt}](http://h/images/${path.basename(outcome.images[0]!.path)})\n\n*sd15 · 64×64 · 3 steps · cfg ${params.cfgScale} · ${params.samplingMethod} · seed ${params.seed}*`);

    const tail = chunks(frames).slice(-2);
    expect(tail[0]!.choices[0]).toMatchObject({ delta: {}, finish_reason: "stop" });
    expect(tail[1]).toMatchObject({ choices: [], usage: { completion_tokens: roughTokens(content + reasoning), total_tokens: 7 + roughTokens(content + reasoning) } });
    expect(frames.at(-1)!.data).toBe("[DONE]");
    // Only the picture is big.
    for (const frame of frames) if (!JSON.stringify(frame.data).includes("base64")) expect(JSON.stringify(frame.data).length).toBeLessThan(1000);
  });

  it("without include_usage: no usage chunk; with an API key: a link, not an embed", async () => {
    const { frames } = await framesOf(sequence("chat-draw"), chatStream(options({ includeUsage: false, links: { ...imageLinks("http://h"), embed: false } })));
    expect(chunks(frames).some((c) => c.usage)).toBe(false);
    expect(deltas(frames).map((d) => d.content ?? "").join("")).toMatch(/^\[[^\]]+\]\(http:\/\/h\/images\//);
  });

  it("a batch of 2 from the image graph: each picture in its own chunk, one status at the end", async () => {
    const { frames } = await framesOf(sequence("batch"), chatStream(options()));
    expect(deltas(frames).filter((d) => d.images).map((d) => d.images![0]!.image_url.url)).toEqual([
      `data:image/png;base64,${fakeImageData(0)}`,
      `data:image/png;base64,${fakeImageData(1)}`,
    ]);
    expect(statuses(frames).filter((s) => s.done)).toEqual([{ description: "2 images ready in 12.3 s", done: true }]);
    expect(deltas(frames).map((d) => d.reasoning_content ?? "").join("")).toMatch(/^Prompt: a \(red:1\.2\) fox\nModel: sd15 · 64×64 · 3 steps · .* · seed 42 · 2 images\n$/);
  });

  it("a reply in words: each piece as it was written, never the whole again, 'Done', no reasoning, no picture", async () => {
    const recorded = sequence("chat-reply");
    const written = recorded.events.flatMap((e) => (e.type === "progress" && e.event.kind === "reply_delta" ? [e.event.text] : []));
    expect(written.length).toBeGreaterThan(1);
    const { frames, imagesRead } = await framesOf(recorded, chatStream(options()));

    const contents = deltas(frames).flatMap((d) => (d.content ? [d.content] : []));
    expect(contents).toEqual(written);
    expect(contents.join("")).toBe("Hi! Ask me to draw something.");
    // Each piece went out as its event came: before the status line settled.
    const settled = chunks(frames).findIndex((c) => c.event?.data.done);
    expect(chunks(frames).findLastIndex((c) => c.choices?.[0]?.delta.content)).toBeLessThan(settled);
    expect(deltas(frames).some((d) => d.reasoning_content !== undefined || d.images !== undefined)).toBe(false);
    expect(statuses(frames).at(-1)).toEqual({ description: "Done", done: true });
    // Usage counts the whole reply.
    expect(chunks(frames).at(-1)!.usage).toMatchObject({ completion_tokens: roughTokens("Hi! Ask me to draw something.") });
    expect(imagesRead).toBe(0);
    expect(frames.at(-1)!.data).toBe("[DONE]");
  });

  it("a reply that came whole (the apology when the LLM was out of reach): its text at the end, once", async () => {
    const recorded = sequence("chat-reply");
    const apology = "I can't answer right now: Ollama is not reachable.";
    const events = recorded.events
      .filter((e) => !(e.type === "progress" && e.event.kind === "reply_delta"))
      .map((e) => (e.type === "outcome" ? { ...e, outcome: { kind: "reply" as const, text: apology, warnings: [] } } : e));
    const { frames } = await framesOf({ ...recorded, events }, chatStream(options()));
    expect(deltas(frames).flatMap((d) => (d.content ? [d.content] : []))).toEqual([apology]);
  });

  it("a failure settles the status line and ends with an error chunk the SDK throws on, then [DONE]", async () => {
    const { frames } = await framesOf(sequence("error"), chatStream(options()));
    const last = chunks(frames).slice(-2);
    expect(last[0]!.event!.data).toMatchObject({ description: expect.stringMatching(/^Failed: sd-cli/), done: true });
    expect(last[1]).toEqual({ id: meta.id, object: "chat.completion.chunk", error: { message: expect.stringContaining("sd-cli"), type: "server_error", param: null, code: "sd_failed" } });
    expect(frames.at(-1)!.data).toBe("[DONE]");
    expect(chunks(frames).some((c) => c.choices?.[0]?.finish_reason === "stop")).toBe(false);
    expect(statuses(frames).filter((s) => s.done)).toHaveLength(1);
  });

  it("a cancel is told as one: code cancelled", async () => {
    const { frames } = await framesOf(sequence("cancel"), chatStream(options()));
    expect(chunks(frames).at(-1)!.error).toEqual({ message: "Cancelled: cancelled by request", type: "invalid_request_error", param: null, code: "cancelled" });
  });

  it("a stream that breaks: an error chunk with code internal, then [DONE]", () => {
    expect(chatStream(options()).failure(new Error("boom"))).toEqual([
      { data: { id: meta.id, object: "chat.completion.chunk", error: { message: "boom", type: "server_error", param: null, code: "internal" } } },
      { data: "[DONE]" },
    ]);
  });
});

describe("the chat answer without stream", () => {
  it("one chat.completion with the picture, the reasoning and the link", () => {
    const outcome = outcomeOf(sequence("chat-draw")).outcome;
    const answer = chatAnswer(outcome, { meta, links: { ...imageLinks("http://h"), embed: true }, promptTokens: 7, images: [fakeImageData(0)], params: chatParams });
    const message = answer.choices[0]!.message;
    expect(answer).toMatchObject({ object: "chat.completion", id: meta.id, choices: [{ finish_reason: "stop" }] });
    expect(message.images).toEqual([{ type: "image_url", image_url: { url: `data:image/png;base64,${fakeImageData(0)}` } }]);
    expect(message.reasoning_content).toMatch(/^Prompt: .*\nNegative prompt: .*\nModel: sd15 · /);
    expect(message.content).toMatch(/^!\[draw a red fox in the snow, highly detailed\]\(http:\/\/h\/images\/[^)]+\.png\)/);
  });

  it("a failure is the API error, its field under the chat's name for it", () => {
    const failed: JobOutcome = { kind: "failed", error: { code: "invalid_request", message: "LoRA 'x' not found", param: "prompt", node: "diffuse" }, warnings: [] };
    let thrown: unknown;
    try {
      chatAnswer(failed, { meta, links: { ...imageLinks("http://h"), embed: true }, promptTokens: 1, images: [], params: chatParams });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ApiError);
    expect(thrown).toMatchObject({ status: 400, message: "LoRA 'x' not found", details: { param: "messages", code: "invalid_request" } });
  });
});
