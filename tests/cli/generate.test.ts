import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { PNG } from "pngjs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { acquireGpuOwnerLock, type GpuOwnerLock } from "../../src/gpu/index.js";
import { readSpawns, readViolations } from "../fakes/fake-gpu.mjs";
import type { FakeOllama } from "../fakes/ollama-server.js";
import { startFakeBox, type FakeBox } from "./helpers/fake-box.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const tsx = path.join(root, "node_modules/.bin/tsx");

let box: FakeBox;
let dir: string;
let gpuDir: string;
let ollama: FakeOllama;
let lock: GpuOwnerLock | undefined;

beforeEach(async () => {
  box = await startFakeBox("cli");
  ({ dir, gpuDir, ollama } = box);
});
afterEach(async () => {
  lock?.release();
  lock = undefined;
  await box.close();
});

function diffugen(...args: string[]) {
  return execa(tsx, [path.join(root, "src/cli/main.ts"), ...args], { cwd: dir, reject: false, env: box.env({ FAKE_SD_STEP_MS: "10" }) });
}

describe("diffugen generate", () => {
  it("runs the whole graph, shows real steps, and saves where --out says", async () => {
    const result = await diffugen("generate", "a red fox", "--model", "sd1.5", "--steps", "3", "-W", "64", "-H", "64", "--out", "fox.png");
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toContain("prompt: a red fox, highly detailed");
    expect(result.stdout).toMatch(/saved .*fox\.png \(64x64, seed \d+, sd15\)/);
    // Without a terminal the progress comes as lines, one per step sd-cli printed.
    expect(result.stderr).toMatch(/Refining prompt/);
    expect(result.stderr).toMatch(/Unloading LLM/);
    expect(result.stderr).toMatch(/Sampling step 1\/3/);
    expect(result.stderr).toMatch(/Sampling step 3\/3/);
    const png = PNG.sync.read(fs.readFileSync(path.join(dir, "fox.png")));
    expect([png.width, png.height]).toEqual([64, 64]);
    expect(ollama.listed()).toContain("qwen2.5:3b");
    expect(readViolations(gpuDir)).toEqual([]);
  });

  it("--no-refine never asks the LLM and draws the prompt as written", async () => {
    const result = await diffugen("generate", "a (red:1.3) fox", "--no-refine", "--steps", "2", "-W", "64", "-H", "64");
    expect(result.exitCode, result.stderr).toBe(0);
    expect(ollama.stats.chat).toBe(0);
    expect(readSpawns(gpuDir)[0]?.argv).toContain("a (red:1.3) fox");
  });

  it("passes every generation flag on: --clip-skip reaches sd-cli", async () => {
    const result = await diffugen("generate", "a fox", "--no-refine", "--steps", "2", "-W", "64", "-H", "64", "--clip-skip", "2", "--seed", "7");
    expect(result.exitCode, result.stderr).toBe(0);
    const argv = readSpawns(gpuDir)[0]!.argv;
    expect(argv[argv.indexOf("--clip-skip") + 1]).toBe("2");
    expect(argv[argv.indexOf("-s") + 1]).toBe("7");
  });

  it("rejects a bad value before anything runs, naming it", async () => {
    const result = await diffugen("generate", "a fox", "--width", "100");
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/width/);
    expect(readSpawns(gpuDir)).toEqual([]);
    expect(ollama.stats.unload).toBe(0);
  });

  it("reports a missing model file with its path and exits non-zero", async () => {
    const result = await diffugen("generate", "a fox", "--model", "flux-schnell");
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(path.join(dir, "models", "flux1-schnell-q8_0.gguf"));
    expect(readSpawns(gpuDir)).toEqual([]);
  });

  it("refuses to drive a GPU another DiffuGen process owns", async () => {
    lock = acquireGpuOwnerLock(path.join(dir, "data"), "diffugen serve (test)");
    const result = await diffugen("generate", "a fox", "--steps", "2", "-W", "64", "-H", "64");
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`Another DiffuGen process (pid ${process.pid}, diffugen serve (test))`);
    expect(readSpawns(gpuDir)).toEqual([]);
    expect(ollama.stats.unload).toBe(0);
  });

  it("a bad environment variable stops it with the variable's name", async () => {
    const result = await execa(tsx, [path.join(root, "src/cli/main.ts"), "generate", "x"], {
      reject: false,
      env: { GENERATION_TIMEOUT_S: "soon" },
    });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("GENERATION_TIMEOUT_S");
  });
});
