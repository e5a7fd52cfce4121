import path from "node:path";
import { describe, expect, it } from "vitest";
import { openaiEditParams, openaiImageParams } from "../../../src/server/fields/openai-fields.js";
import { openaiImageStream, type OpenAIImageStreamOptions } from "../../../src/server/format/openai-image-stream.js";
import { openaiImagesBody, openaiImagesResult, zeroImageUsage } from "../../../src/server/format/openai-images.js";
import { imagesOrThrow, type ImagesOutcome } from "../../../src/server/format/outcomes.js";
import type { Frame } from "../../../src/server/format/stream-formatter.js";
import { fakeImageData, framesOf, outcomeOf, progressEvents, sequence } from "./sequences.js";
import { imageLinks } from "../../../src/server/image-links.js";

const now = 1_700_000_123_456;
const options = (more: Partial<OpenAIImageStreamOptions> = {}): OpenAIImageStreamOptions => ({
  prefix: "image_generation",
  partialImages: 0,
  size: "64x64",
  quality: "auto",
  links: imageLinks("http://h"),
  params: openaiImageParams,
  clock: () => now,
  ...more,
});

type Data = { type: string; [key: string]: unknown };
const data = (frame: Frame) => frame.data as Data;
const typesOf = (frames: Frame[]) => frames.map((f) => data(f).type);

describe("the OpenAI image stream, over recorded jobs", () => {
  it("success: progress under the job's own ids, then one completed image, last, under the end's id", async () => {
    const recorded = sequence("success");
    const { outcome, seq: endSeq } = outcomeOf(recorded);
    const { frames, imagesRead } = await framesOf(recorded, openaiImageStream(options()));

    expect(typesOf(frames).slice(0, -1).every((t) => t === "diffugen.progress")).toBe(true);
    expect(typesOf(frames).at(-1)).toBe("image_generation.completed");
    for (const frame of frames) expect(frame.event).toBe(data(frame).type);
    // Ids: every message names the job event it comes from, in order; resuming from one loses nothing.
    const ids = frames.map((f) => f.seq);
    expect(ids.every((id) => typeof id === "number")).toBe(true);
    expect(ids).toEqual([...ids].sort((a, b) => a! - b!));
    expect(ids.at(-1)).toBe(endSeq);
    const statusSeqs = progressEvents(recorded)
      .filter(({ event, seq }) => event.kind === "status" && seq < endSeq)
      .map(({ seq }) => seq);
    expect(ids).toEqual(expect.arrayContaining(statusSeqs));
    // The sampling steps show, small.
    const steps = frames.flatMap((f) => ((data(f).step as { current: number } | undefined)?.current ?? []));
    expect(steps).toEqual([1, 2, 3, 4]);
    for (const frame of frames.slice(0, -1)) {
      expect(JSON.stringify(frame.data).length).toBeLessThan(400);
      expect(data(frame)).not.toHaveProperty("b64_json");
    }

    if (outcome.kind !== "images") throw new Error("expected images");
    expect(outcome.prompt).toBe("a red fox, highly detailed");
    expect(imagesRead).toBe(1);
    expect(frames.at(-1)!.data).toEqual({
      type: "image_generation.completed",
      b64_json: fakeImageData(0),
      created_at: Math.floor(now / 1000),
      size: "64x64",
      quality: "auto",
      background: "opaque",
      output_format: "png",
      usage: zeroImageUsage,
      revised_prompt: outcome.prompt,
      url: `http://h/images/${path.basename(outcome.images[0]!.path)}`,
      seed: outcome.images[0]!.seed,
      index: 0,
    });
  });

  it("partial images: real previews, never more than asked, spread over sampling, each under its preview's id", async () => {
    const recorded = sequence("previews");
    const previews = progressEvents(recorded).filter(({ event }) => event.kind === "preview");
    expect(previews.length).toBeGreaterThanOrEqual(4);
    for (const asked of [0, 1, 2, 3]) {
      const { frames } = await framesOf(recorded, openaiImageStream(options({ partialImages: asked, size: "auto" })));
      const partials = frames.filter((f) => data(f).type === "image_generation.partial_image");
      expect(partials).toHaveLength(asked);
      partials.forEach((partial, i) => {
        expect(partial.event).toBe("image_generation.partial_image");
        // Issue 13 #12: `size` is the preview's own size (latent-sized, 8x8 here), not the 64x64 drawn.
        expect(data(partial)).toMatchObject({ partial_image_index: i, size: "8x8", output_format: "png" });
        const source = previews.find(({ seq }) => seq === partial.seq);
        expect(source?.event.kind === "preview" && source.event.pngBase64).toBe(data(partial).b64_json);
        expect(source?.event.kind === "preview" && `${source.event.width}x${source.event.height}`).toBe(data(partial).size);
      });
      // Spread: the second one comes from a later preview than the first.
      if (asked >= 2) expect(partials[1]!.seq).toBeGreaterThan(partials[0]!.seq!);
      expect(typesOf(frames).at(-1)).toBe("image_generation.completed");
    }
  });

  it("a batch of 2: two completed images, in order, each with its own picture and seed", async () => {
    const recorded = sequence("batch");
    const { frames, imagesRead } = await framesOf(recorded, openaiImageStream(options()));
    const completed = frames.filter((f) => data(f).type === "image_generation.completed").map(data);
    expect(imagesRead).toBe(2);
    expect(completed.map((c) => [c.index, c.seed, c.b64_json, c.revised_prompt])).toEqual([
      [0, 42, fakeImageData(0), "a (red:1.2) fox"],
      [1, 43, fakeImageData(1), "a (red:1.2) fox"],
    ]);
    expect(typesOf(frames).slice(-2)).toEqual(["image_generation.completed", "image_generation.completed"]);
  });

  it("error: an error the SDK throws on, with the run's code, and no image", async () => {
    const recorded = sequence("error");
    const { frames, imagesRead } = await framesOf(recorded, openaiImageStream(options()));
    expect(imagesRead).toBe(0);
    expect(typesOf(frames).filter((t) => t !== "diffugen.progress")).toEqual(["error"]);
    const last = frames.at(-1)!;
    expect(last.event).toBe("error");
    expect(last.seq).toBe(outcomeOf(recorded).seq);
    expect(last.data).toEqual({ type: "error", error: { message: expect.stringContaining("sd-cli"), type: "server_error", code: "sd_failed", param: null } });
    // The run's own error event is told once, by the answer, not as progress.
    expect(frames.filter((f) => data(f).phase === "error")).toEqual([]);
  });

  it("cancel: an error with code cancelled", async () => {
    const { frames } = await framesOf(sequence("cancel"), openaiImageStream(options()));
    expect(frames.at(-1)!.data).toEqual({
      type: "error",
      error: { message: "Cancelled: cancelled by request", type: "invalid_request_error", code: "cancelled", param: null },
    });
  });

  it("an edit's failure names the upload as `image`; a stream that breaks says so, without an id", () => {
    const failed = { kind: "failed" as const, error: { code: "invalid_request", message: "init image not found", param: "initImage", node: "diffuse" }, warnings: [] };
    expect(() => imagesOrThrow(failed, openaiEditParams)).toThrow(expect.objectContaining({ status: 400, details: expect.objectContaining({ param: "image" }) }));
    const formatter = openaiImageStream(options({ prefix: "image_edit", params: openaiEditParams }));
    expect(formatter.failure(new Error("disk on fire"))).toEqual([
      { event: "error", data: { type: "error", error: { message: "disk on fire", type: "server_error", code: "internal", param: null } } },
    ]);
  });
});

describe("OpenAI's data[], built once for both answers", () => {
  const recorded = sequence("batch");
  const outcome = outcomeOf(recorded).outcome as ImagesOutcome;
  const images = [fakeImageData(0), fakeImageData(1)];

  it("POST /v1/images/generations: base64 by default, links with response_format url", () => {
    const b64 = openaiImagesBody(outcome, { responseFormat: undefined, quality: "hd", links: imageLinks("http://h"), images, now });
    expect(b64).toEqual({
      created: Math.floor(now / 1000),
      data: [
        { b64_json: "PNG0", revised_prompt: "a (red:1.2) fox", seed: 42 },
        { b64_json: "PNG1", revised_prompt: "a (red:1.2) fox", seed: 43 },
      ],
      background: "opaque",
      output_format: "png",
      quality: "hd",
      size: "64x64",
      usage: zeroImageUsage,
    });
    const urls = openaiImagesBody(outcome, { responseFormat: "url", quality: "auto", links: imageLinks("http://h"), images: [], now });
    expect(urls.data.map((d) => Object.keys(d))).toEqual([
      ["url", "revised_prompt", "seed"],
      ["url", "revised_prompt", "seed"],
    ]);
    expect(urls.data[1]).toMatchObject({ url: `http://h/images/${path.basename(outcome.images[1]!.path)}` });
    // Base64 that was never read is a failure, not an image without data.
    expect(() => openaiImagesBody(outcome, { responseFormat: "b64_json", quality: "auto", links: imageLinks("http://h"), images: [], now })).toThrow(/not read/);
  });

  it("the seed-API stream's `done` carries the same data[]", () => {
    const result = openaiImagesResult(outcome, { responseFormat: undefined, links: imageLinks("http://h"), images, now });
    expect(result.data).toEqual(openaiImagesBody(outcome, { responseFormat: undefined, quality: "auto", links: imageLinks("http://h"), images, now }).data);
    expect(result).toMatchObject({ output_format: "png", size: "64x64", usage: zeroImageUsage });
    expect(result).not.toHaveProperty("background");
  });
});
