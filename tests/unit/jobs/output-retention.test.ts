import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { newOutputPath, outputTagFor, outputTagOf } from "../../../src/diffusion/index.js";
import { pruneOutputs, removeJobFiles } from "../../../src/jobs/index.js";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-outputs-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const day = 86_400_000;

/** An output file as sd-cli would leave it, `ageMs` old. */
function output(tag: string, ageMs: number, suffix = ""): string {
  const file = newOutputPath(dir, new Date(Date.now() - ageMs), tag).replace(/\.png$/, `${suffix}.png`);
  fs.writeFileSync(file, "png");
  const when = new Date(Date.now() - ageMs);
  fs.utimesSync(file, when, when);
  return path.basename(file);
}

describe("output files", () => {
  it("carry their job's tag in the name", () => {
    const tag = outputTagFor("job-0b5e8f7e-52c1-4c1e-9a55-3f2d8e6b1a90")!;
    expect(tag).toBe("9a553f2d8e6b1a90");
    expect(outputTagOf(path.basename(newOutputPath(dir, new Date(), tag)))).toBe(tag);
    expect(outputTagOf("holiday.png")).toBeUndefined();
  });

  it("are removed per job: images, a partial batch, a preview", () => {
    const mine = [output("aaaaaaaa11111111", 0, "_0"), output("aaaaaaaa11111111", 0, "_1"), output("aaaaaaaa11111111", 0, ".preview")];
    const other = output("bbbbbbbb22222222", 0);
    expect(removeJobFiles(dir, "aaaaaaaa11111111")).toBe(mine.length);
    expect(fs.readdirSync(dir)).toEqual([other]);
  });

  it("are pruned by age and count, sparing running jobs and files DiffuGen did not write", () => {
    fs.writeFileSync(path.join(dir, "my-own-picture.png"), "keep");
    const old = output("cccccccc33333333", 40 * day);
    const oldButRunning = output("dddddddd44444444", 40 * day);
    const recent = [1, 2, 3].map((i) => output(`eeeeeeee5555555${i}`, i * 1000));

    expect(pruneOutputs(dir, { maxAgeMs: 30 * day, maxCount: 0 }, new Set(["dddddddd44444444"]))).toBe(1);
    expect(fs.existsSync(path.join(dir, old))).toBe(false);
    expect(fs.existsSync(path.join(dir, oldButRunning))).toBe(true);

    expect(pruneOutputs(dir, { maxAgeMs: 0, maxCount: 2 })).toBe(2);
    expect(fs.readdirSync(dir).sort()).toEqual(["my-own-picture.png", recent[0], recent[1]].sort());
    expect(pruneOutputs(dir, { maxAgeMs: 0, maxCount: 0 })).toBe(0);
  });
});
