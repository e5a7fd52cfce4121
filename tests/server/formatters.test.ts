import { describe, expect, it } from "vitest";
import { phases, progressIn, type ProgressEvent } from "../../src/events/progress-event.js";
import {
  describeForStatus,
  imageMarkdown,
  previousPromptIn,
  withoutImages,
} from "../../src/server/format/chat-completions.js";
import { seedPhaseAndProgress } from "../../src/server/format/diffugen-api.js";
import { PartialImagePicker, formatImageProgress } from "../../src/server/format/openai-images.js";
import { fitToGrid, sniffImage } from "../../src/server/uploads.js";
import { makePng } from "./harness.js";

const at = 0;
const preview = (progress: number): ProgressEvent => ({ kind: "preview", phase: "sampling", progress, message: "", at, pngBase64: "AAAA", width: 8, height: 8 });

describe("formatters (pure)", () => {
  it("maps our phases into the seed API's bands, monotonically", () => {
    const bands: Record<string, [number, number]> = {
      initializing: [0, 5],
      loading_model: [5, 15],
      preparing: [15, 20],
      generating: [20, 90],
      post_processing: [90, 100],
      complete: [100, 100],
      error: [100, 100],
    };
    let last = -1;
    for (const phase of phases.filter((p) => p !== "error")) {
      for (const f of [0, 0.25, 0.5, 0.75, 1]) {
        const mapped = seedPhaseAndProgress(phase, progressIn(phase, f));
        const [lo, hi] = bands[mapped.phase]!;
        expect(mapped.progress).toBeGreaterThanOrEqual(lo);
        expect(mapped.progress).toBeLessThanOrEqual(hi);
        if (phase !== "queued") expect(mapped.progress).toBeGreaterThanOrEqual(last);
        last = Math.max(last, mapped.progress);
      }
    }
    expect(seedPhaseAndProgress("loading_model", 20).phase).toBe("preparing");
    expect(seedPhaseAndProgress("sampling", 55)).toEqual({ phase: "generating", progress: 55 });
  });

  it("spreads partial images over sampling, never more than asked, never invented", () => {
    const pick = (count: number, at: number[]) => {
      const picker = new PartialImagePicker(count);
      return at.filter((p) => picker.take(preview(p)));
    };
    const every = Array.from({ length: 20 }, (_, i) => 20 + (70 * (i + 1)) / 20);
    expect(pick(3, every)).toEqual([23.5, 44.5, 69]);
    expect(pick(1, every)).toEqual([23.5]);
    expect(pick(0, every)).toEqual([]);
    expect(pick(3, [90])).toEqual([90]);
    expect(new PartialImagePicker(2).take({ kind: "status", phase: "sampling", progress: 50, message: "", at })).toBe(false);
  });

  it("keeps progress small: no previews or images in progress objects", () => {
    expect(formatImageProgress(preview(50))).toBeUndefined();
  });

  it("writes OpenWebUI status lines from sampling steps", () => {
    const step = (image?: { index: number; count: number }): ProgressEvent => ({
      kind: "status",
      phase: "sampling",
      progress: 40,
      message: "Sampling step 7/20 · 0.3 s/step · ~3.9 s left",
      at,
      step: { current: 7, total: 20, secondsPerStep: 0.3, etaSeconds: 3.9, image },
    });
    expect(describeForStatus(step())).toBe("Sampling 7/20, 4 s left");
    expect(describeForStatus(step({ index: 2, count: 3 }))).toBe("Sampling 7/20 (image 2/3), 4 s left");
    expect(describeForStatus(preview(50))).toBeUndefined();
    expect(describeForStatus({ kind: "status", phase: "loading_model", progress: 16, message: "Loading model weights 48/686", at })).toBe("Loading model weights");
  });

  it("round-trips a prompt through the markdown image alt text", () => {
    const prompt = "a [red] fox\\ (snow:1.2), <lora:foxy:0.7>";
    const md = imageMarkdown(prompt, "http://h/images/a.png");
    expect(previousPromptIn(["hello", `${md}\n\n*sd15 · 64×64*`, "no picture here"])).toBe(prompt);
    expect(previousPromptIn(["![x](https://elsewhere.example/cat.png)"])).toBeUndefined();
    expect(withoutImages(`${md} and data:image/png;base64,AAAA`)).toBe(`[picture: ${prompt}] and [image data]`);
  });

  it("a plain link (API key set: a browser cannot load the image) carries the prompt just the same", () => {
    const prompt = "a [red] fox";
    const link = imageMarkdown(prompt, "http://h/images/a.png", { embed: false });
    expect(link).toBe("[a \\[red\\] fox](http://h/images/a.png)");
    expect(previousPromptIn([`${link}\n\n*sd15*`])).toBe(prompt);
    expect(withoutImages(`${link} see [docs](https://example.com/docs)`)).toBe(`[picture: ${prompt}] see [docs](https://example.com/docs)`);
  });

  it("recognises PNG and JPEG by their bytes and fits uploads to the 64 grid", () => {
    expect(sniffImage(makePng(100, 30))).toEqual({ format: "png", width: 100, height: 30 });
    const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, 0xc0, 0, 11, 8, 0, 48, 0, 80, 3, 1, 1, 1]);
    expect(sniffImage(jpeg)).toEqual({ format: "jpeg", width: 80, height: 48 });
    expect(sniffImage(Buffer.from("GIF89a......................................"))).toBeUndefined();
    expect(sniffImage(makePng(64, 64).subarray(0, 50))).toBeUndefined();
    expect(fitToGrid(1000, 700, { minSize: 64, maxSize: 1024 })).toEqual({ width: 1024, height: 704 });
    expect(fitToGrid(4000, 1000, { minSize: 64, maxSize: 1024 })).toEqual({ width: 1024, height: 256 });
    expect(fitToGrid(10, 10, { minSize: 64, maxSize: 1024 })).toEqual({ width: 64, height: 64 });
  });
});
