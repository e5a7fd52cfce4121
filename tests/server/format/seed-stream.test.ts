import { describe, expect, it } from "vitest";
import { phaseBands, phases, progressIn, type Phase, type ProgressEvent } from "../../../src/events/progress-event.js";
import { openaiImageParams } from "../../../src/server/fields/openai-fields.js";
import { seedParams } from "../../../src/server/fields/seed-fields.js";
import { formatSeedResult, seedPhaseAndProgress } from "../../../src/server/format/diffugen-api.js";
import { openaiImagesResult } from "../../../src/server/format/openai-images.js";
import { seedStream } from "../../../src/server/format/seed-stream.js";
import type { Frame } from "../../../src/server/format/stream-formatter.js";
import { fakeImageData, framesOf, outcomeOf, sequence } from "./sequences.js";
import { imageLinks } from "../../../src/server/image-links.js";

const now = Date.UTC(2026, 0, 2, 3, 4, 5);
const seedOptions = {
  result: (outcome: Parameters<typeof formatSeedResult>[0]) => formatSeedResult(outcome, imageLinks("http://h"), "a red fox"),
  needsImageData: false,
  params: seedParams,
  clock: () => now,
};

const seedPhases = ["initializing", "loading_model", "preparing", "generating", "post_processing", "complete"];
type Progress = { phase: string; progress: number; message: string; step: number | null; total_steps: number | null };
const progressOf = (frames: Frame[]) => frames.filter((f) => f.event === "progress").map((f) => f.data as Progress);

describe("the seed API's stream, over recorded jobs", () => {
  it("success: a bar that never goes back nor repeats, in their phases, then complete and done", async () => {
    const recorded = sequence("previews");
    const { outcome, seq: endSeq } = outcomeOf(recorded);
    const { frames, imagesRead } = await framesOf(recorded, seedStream(seedOptions));
    const progress = progressOf(frames);

    for (const p of progress) expect(Object.keys(p).sort()).toEqual(["eta_seconds", "message", "phase", "progress", "step", "timestamp", "total_steps"]);
    const values = progress.map((p) => p.progress);
    expect(values).toEqual([...values].sort((a, b) => a - b));
    for (let i = 1; i < progress.length; i++) {
      const [a, b] = [progress[i - 1]!, progress[i]!];
      expect(`${b.phase}|${b.progress}|${b.message}`).not.toBe(`${a.phase}|${a.progress}|${a.message}`);
    }
    const order = progress.map((p) => seedPhases.indexOf(p.phase));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    // Previews are no part of their protocol.
    expect(frames.some((f) => JSON.stringify(f.data).includes("Preview"))).toBe(false);
    expect(progress.filter((p) => p.phase === "generating" && p.step !== null).map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);

    // The end (issue 13 #13): 100 under the id of the job event before the end (the last
    // image's, whose own line it replaces), then the result under the end's own id: every
    // line has its own id, and a client that lost `done` resumes before the end.
    expect(frames.slice(-2).map((f) => [f.event, f.seq])).toEqual([
      ["progress", endSeq - 1],
      ["done", endSeq],
    ]);
    const ids = frames.map((f) => f.seq);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual([...ids].sort((a, b) => a! - b!));
    const messages = progress.map((p) => p.message);
    expect(new Set(messages).size).toBe(messages.length);
    expect(progress.at(-1)).toEqual({ phase: "complete", progress: 100, message: "Image ready", step: 8, total_steps: 8, eta_seconds: 0, timestamp: new Date(now).toISOString() });
    if (outcome.kind !== "images") throw new Error("expected images");
    expect(frames.at(-1)!.data).toEqual({ done: true, ...formatSeedResult(outcome, imageLinks("http://h"), "a red fox") });
    expect(frames.at(-1)!.data).toMatchObject({ success: true, model: "sd15", prompt: "a red fox, highly detailed", original_prompt: "a red fox" });
    expect(imagesRead).toBe(0);
    expect(frames.every((f) => typeof f.seq === "number")).toBe(true);
  });

  it("keeps the bar from going back even when the events do (a job queued again for the GPU)", () => {
    const formatter = seedStream(seedOptions);
    const at = 0;
    const status = (phase: Phase, progress: number, message = "m"): ProgressEvent => ({ kind: "status", phase, progress, message, at });
    const sent = [status("sampling", 55, "a"), status("queued", 0, "b"), status("queued", 0, "b"), status("sampling", 62, "c")].flatMap(
      (event, i) => formatter.progress?.(event, i + 1) ?? [],
    );
    expect(sent.map((f) => (f.data as Progress).progress)).toEqual([55, 55, 62]);
    expect(sent.map((f) => f.seq)).toEqual([1, 2, 4]);
  });

  it("one line per message: the same words a little further along are not sent again", () => {
    const formatter = seedStream(seedOptions);
    const status = (phase: Phase, progress: number, message: string): ProgressEvent => ({ kind: "status", phase, progress, message, at: 0 });
    // sd-cli's start and its first line both say "Loading the image model", the second further along.
    const sent = [
      status("unloading_llm", 15, "LLM out of VRAM"),
      status("loading_model", 15, "Loading the image model"),
      status("loading_model", 17.5, "Loading the image model"),
      status("loading_model", 20, "Loading model weights 196/196"),
    ].flatMap((event, i) => formatter.progress?.(event, i + 1) ?? []);
    expect(sent.map((f) => [(f.data as Progress).message, (f.data as Progress).progress, f.seq])).toEqual([
      ["LLM out of VRAM", 10, 1],
      ["Loading the image model", 10, 2],
      ["Loading model weights 196/196", 20, 4],
    ]);
  });

  it("a batch of 2: each image's line but the last, which the complete line replaces; every id its own", async () => {
    const recorded = sequence("batch");
    const { seq: endSeq } = outcomeOf(recorded);
    const { frames } = await framesOf(recorded, seedStream(seedOptions));
    const messages = progressOf(frames).map((p) => p.message);
    expect(messages.filter((m) => m.startsWith("Image "))).toEqual([expect.stringMatching(/^Image 1\/2 ready/)]);
    expect(frames.slice(-2).map((f) => [f.event, f.seq])).toEqual([
      ["progress", endSeq - 1],
      ["done", endSeq],
    ]);
    const ids = frames.map((f) => f.seq);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("a batch of 2: '2 images ready', and every image in the result", async () => {
    const { frames } = await framesOf(sequence("batch"), seedStream(seedOptions));
    expect(progressOf(frames).at(-1)).toMatchObject({ phase: "complete", message: "2 images ready", step: 3, total_steps: 3 });
    expect((frames.at(-1)!.data as { images: { seed: number }[] }).images.map((i) => i.seed)).toEqual([42, 43]);
  });

  it("error: event error with the run's code, no done, and the run's error event is not a progress line", async () => {
    const recorded = sequence("error");
    const { frames } = await framesOf(recorded, seedStream(seedOptions));
    expect(frames.at(-1)).toEqual({
      event: "error",
      seq: outcomeOf(recorded).seq,
      data: { error: expect.stringContaining("sd-cli"), phase: "error", code: "sd_failed", timestamp: new Date(now).toISOString() },
    });
    expect(frames.filter((f) => f.event !== "progress")).toHaveLength(1);
    expect(progressOf(frames).some((p) => p.phase === "error" || p.phase === "complete")).toBe(false);
  });

  it("cancel: event error with code cancelled", async () => {
    const { frames } = await framesOf(sequence("cancel"), seedStream(seedOptions));
    expect(frames.at(-1)).toMatchObject({ event: "error", data: { error: "Cancelled: cancelled by request", code: "cancelled" } });
  });

  it("/v1/images/generations/stream: OpenAI's data[] in `done`, the images read only when sent as base64", async () => {
    const recorded = sequence("batch");
    const withData = (responseFormat: "url" | undefined) =>
      seedStream({
        result: (outcome, images) => openaiImagesResult(outcome, { responseFormat, links: imageLinks("http://h"), images, now }),
        needsImageData: responseFormat !== "url",
        params: seedParams,
      });
    const b64 = await framesOf(recorded, withData(undefined));
    expect(b64.imagesRead).toBe(2);
    expect((b64.frames.at(-1)!.data as { data: { b64_json: string }[] }).data.map((d) => d.b64_json)).toEqual([fakeImageData(0), fakeImageData(1)]);
    const urls = await framesOf(recorded, withData("url"));
    expect(urls.imagesRead).toBe(0);
    expect(urls.frames.at(-1)!.data).toMatchObject({ done: true, size: "64x64", data: [{ url: expect.stringMatching(/^http:\/\/h\/images\//) }, { url: expect.any(String) }] });
  });

  it("/v1/images/generations/stream (errors: openai): the run's error and a broken stream in OpenAI's shape", async () => {
    const recorded = sequence("error");
    const formatter = seedStream({ ...seedOptions, params: openaiImageParams, errors: "openai" });
    const { frames } = await framesOf(recorded, formatter);
    expect(frames.at(-1)).toEqual({
      event: "error",
      seq: outcomeOf(recorded).seq,
      data: { type: "error", error: { message: expect.stringContaining("sd-cli"), type: "server_error", code: "sd_failed", param: null } },
    });
    expect(seedStream({ ...seedOptions, errors: "openai" }).failure(new Error("boom"))).toEqual([
      { event: "error", data: { type: "error", error: { message: "boom", type: "server_error", code: "internal", param: null } } },
    ]);
  });

  it("a stream that breaks: event error, no id", () => {
    expect(seedStream(seedOptions).failure(new Error("boom"))).toEqual([{ event: "error", data: { error: "boom", phase: "error" } }]);
  });
});

describe("their bands, from phaseBands", () => {
  /** Their bands for our phases, as REFERENCE.md §5 gives them (100 is `complete`). */
  const theirs: Record<Exclude<Phase, "complete" | "error">, [number, number]> = {
    queued: [0, 5],
    refining: [0, 5],
    unloading_llm: [5, 10],
    loading_model: [10, 20],
    sampling: [20, 90],
    decoding: [90, 99],
    saving: [90, 99],
    reloading_llm: [90, 99],
  };

  it("each of our phases fills its band of theirs, read from phaseBands, monotonically", () => {
    let last = 0;
    for (const phase of phases) {
      if (phase === "complete" || phase === "error") {
        expect(seedPhaseAndProgress(phase, 0)).toEqual({ phase, progress: 100 });
        continue;
      }
      const [lo, hi] = theirs[phase];
      for (const f of [0, 0.1, 0.5, 0.9, 1]) {
        const mapped = seedPhaseAndProgress(phase, progressIn(phase, f));
        expect(mapped.progress).toBeGreaterThanOrEqual(lo);
        expect(mapped.progress).toBeLessThanOrEqual(hi);
        expect(mapped.progress).toBeGreaterThanOrEqual(last);
        last = mapped.progress;
      }
    }
    // The edges of our bands meet the edges of theirs.
    expect(seedPhaseAndProgress("unloading_llm", phaseBands.unloading_llm[0]).progress).toBe(5);
    expect(seedPhaseAndProgress("sampling", phaseBands.sampling[0])).toEqual({ phase: "generating", progress: 20 });
    expect(seedPhaseAndProgress("sampling", phaseBands.sampling[1])).toEqual({ phase: "generating", progress: 90 });
    expect(seedPhaseAndProgress("reloading_llm", phaseBands.reloading_llm[1])).toEqual({ phase: "post_processing", progress: 99 });
  });

  it("the same numbers as the hand-written mapping it replaced", () => {
    const clamp01 = (x: number) => Math.min(1, Math.max(0, x));
    const round1 = (x: number) => Math.round(x * 10) / 10;
    const before = (phase: Phase, p: number) => {
      switch (phase) {
        case "queued":
        case "refining":
          return { phase: "initializing", progress: round1(5 * clamp01(p / 10)) };
        case "unloading_llm":
          return { phase: "loading_model", progress: round1(5 + 5 * clamp01((p - 10) / 5)) };
        case "loading_model": {
          const mapped = round1(10 + 10 * clamp01((p - 15) / 5));
          return { phase: mapped < 15 ? "loading_model" : "preparing", progress: mapped };
        }
        case "sampling":
          return { phase: "generating", progress: round1(20 + 70 * clamp01((p - 20) / 70)) };
        case "decoding":
        case "saving":
        case "reloading_llm":
          return { phase: "post_processing", progress: round1(90 + 9 * clamp01((p - 90) / 10)) };
        case "complete":
          return { phase: "complete", progress: 100 };
        case "error":
          return { phase: "error", progress: 100 };
      }
    };
    for (const phase of phases) {
      for (let p = 0; p <= 100; p = round1(p + 0.1)) expect(seedPhaseAndProgress(phase, p), `${phase} at ${p}`).toEqual(before(phase, p));
    }
  });
});
