import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { PNG } from "pngjs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { completePngInfo } from "../../../src/diffusion/png-check.js";
import { PreviewWatcher } from "../../../src/diffusion/preview-watcher.js";
import type { SdPreviewEvent } from "../../../src/diffusion/sd-events.js";
import { fixturesDir } from "./fixtures.js";

const preview = fs.readFileSync(path.join(fixturesDir, "preview.png"));
const output = fs.readFileSync(path.join(fixturesDir, "gen-basic.out.png"));

function solidPng(width: number, height: number, shade: number): Buffer {
  const png = new PNG({ width, height });
  png.data.fill(shade);
  return PNG.sync.write(png);
}

describe("completePngInfo", () => {
  it("accepts sd-cli's real preview and output images with their sizes", () => {
    expect(completePngInfo(preview)).toEqual({ width: 8, height: 8 });
    expect(completePngInfo(output)).toEqual({ width: 64, height: 64 });
  });

  it("refuses the file cut at every length (a half-written preview)", () => {
    for (let length = 0; length < preview.length; length++) {
      expect(completePngInfo(preview.subarray(0, length)), `cut at ${length}`).toBeUndefined();
    }
  });

  it("refuses a flipped byte anywhere after the signature (CRC mismatch)", () => {
    for (let i = 8; i < preview.length; i++) {
      const damaged = Buffer.from(preview);
      damaged[i] = (damaged[i] ?? 0) ^ 0x01;
      expect(completePngInfo(damaged), `byte ${i}`).toBeUndefined();
    }
  });

  it("refuses trailing bytes after IEND and non-PNG data", () => {
    expect(completePngInfo(Buffer.concat([preview, Buffer.from([0])]))).toBeUndefined();
    expect(completePngInfo(Buffer.from("not a png at all, not a png at all, not a png"))).toBeUndefined();
  });
});

describe("PreviewWatcher", () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-preview-"));
    file = path.join(dir, "preview.png");
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const context = (step: number) => ({ phase: "sampling" as const, progress: 0.5, step, imageIndex: 0 });

  it("emits only complete PNGs, and only when they changed", async () => {
    const got: SdPreviewEvent[] = [];
    const watcher = new PreviewWatcher(file, (e) => got.push(e));
    const first = solidPng(8, 8, 10);
    const second = solidPng(8, 8, 200);

    watcher.poke(context(1)); // no file yet
    await watcher.idle();
    fs.writeFileSync(file, first.subarray(0, first.length - 5)); // caught mid-write
    watcher.poke(context(2));
    await watcher.idle();
    fs.writeFileSync(file, first);
    watcher.poke(context(3));
    await watcher.idle();
    watcher.poke(context(4)); // unchanged
    await watcher.idle();
    fs.writeFileSync(file, second);
    watcher.poke(context(5));
    await watcher.idle();

    expect(got.map((e) => e.step)).toEqual([3, 5]);
    expect(got[0]?.png.equals(first)).toBe(true);
    expect(got[1]?.png.equals(second)).toBe(true);
    expect(got[1]).toMatchObject({ type: "preview", width: 8, height: 8, imageIndex: 0, phase: "sampling" });
  });

  it("collapses steps that arrive during a read into one more read", async () => {
    const got: SdPreviewEvent[] = [];
    const watcher = new PreviewWatcher(file, (e) => got.push(e));
    fs.writeFileSync(file, solidPng(8, 8, 1));
    for (let step = 1; step <= 10; step++) watcher.poke(context(step));
    await watcher.idle();
    // The first read and one read for the latest queued step; the file did not change in between.
    expect(got.map((e) => e.step)).toEqual([1]);
  });

  it("emits nothing after stop()", async () => {
    const got: SdPreviewEvent[] = [];
    const watcher = new PreviewWatcher(file, (e) => got.push(e));
    fs.writeFileSync(file, solidPng(8, 8, 1));
    watcher.stop();
    watcher.poke(context(1));
    await watcher.idle();
    expect(got).toEqual([]);
  });
});
