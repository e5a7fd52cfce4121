import fs from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readSpawns, readViolations } from "../fakes/fake-gpu.mjs";
import { diffugenCommand } from "./helpers/diffugen-command.js";
import { startFakeBox, type FakeBox } from "./helpers/fake-box.js";

/**
 * What `diffugen generate` puts on the user's screen: under a pseudo-terminal (util-linux
 * `script`), the progress bars; piped, plain lines. The sd-cli double runs slowly enough
 * (like gen-basic: a text-encoder load, the UNet's lazy load after "generating image", the
 * VAE's after "decoding") for the bars to be drawn in every phase.
 */

let box: FakeBox;

beforeEach(async () => {
  box = await startFakeBox("cli-terminal");
});
afterEach(async () => {
  await box.close();
});

const slowSd = { FAKE_SD_STEP_MS: "150", FAKE_SD_LOAD_MS: "250", FAKE_SD_DECODE_MS: "100", LOG_LEVEL: "info" };
const tiny = ["--steps", "4", "-W", "64", "-H", "64"];

const quote = (arg: string) => `'${arg.replaceAll("'", `'\\''`)}'`;

/** Runs diffugen under a pseudo-terminal; returns what the terminal received (stdout and stderr both). */
async function onTerminal(args: string[], extraEnv: Record<string, string> = {}) {
  const { file, args: argv } = diffugenCommand(...args);
  const command = [file, ...argv].map(quote).join(" ");
  const result = await execa("script", ["-qfec", command, "/dev/null"], {
    cwd: box.dir,
    reject: false,
    env: box.env({ ...slowSd, COLUMNS: "100", LINES: "40", ...extraEnv }),
    timeout: 60_000,
  });
  return { exitCode: result.exitCode, screen: result.stdout };
}

function piped(args: string[], extraEnv: Record<string, string> = {}) {
  const { file, args: argv } = diffugenCommand(...args);
  return execa(file, argv, { cwd: box.dir, reject: false, env: box.env({ ...slowSd, ...extraEnv }), timeout: 60_000 });
}

/** The lines a terminal would show last for each bar: the text after each cursor move, without escapes. */
function screenLines(screen: string): string[] {
  return screen
    .split(/\r|\n|\x1b\[1G/)
    .map((line) => line.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").trimEnd())
    .filter((line) => line !== "");
}

const jsonLine = /^\s*\{"level":/m;

describe("diffugen generate on a terminal", () => {
  it("draws the bars with no JSON log in them, shows the last step and the whole message, and the UNet load as loading", async () => {
    const { exitCode, screen } = await onTerminal(["generate", "a red fox", ...tiny, "--out", "fox.png"]);
    expect(exitCode, screen).toBe(0);
    // The log went to its file, not into the bars.
    expect(screen).not.toMatch(/"level":/);
    const log = fs.readFileSync(path.join(box.dir, "data", "logs", "diffugen.log"), "utf8");
    expect(log).toMatch(/"msg":"unloading LLM"/);

    const lines = screenLines(screen);
    // The sampling bar ends on the last step, with the whole message after it.
    const lastSampling = lines.filter((l) => l.startsWith("Sampling")).at(-1);
    expect(lastSampling).toMatch(/\| step 4\/4 · Sampled image 1 in [\d.]+ s$/);
    // Weight loading is drawn on the loading bar: the UNet's (after "generating image") and the VAE's.
    const loading = lines.filter((l) => l.startsWith("Loading model"));
    // (the double loads like gen-basic: 196 text-encoder tensors, the UNet's 686, the VAE's 140)
    expect(loading.some((l) => /\| Loading model weights \d+\/686$/.test(l))).toBe(true);
    expect(loading.some((l) => /\| Loading model weights \d+\/140$/.test(l))).toBe(true);
    // The first step's time includes the UNet load: no rate or ETA is shown from it.
    expect(lines.filter((l) => /\| step 1\/4/.test(l)).every((l) => l.endsWith("| step 1/4"))).toBe(true);
    // No sampling bar ever showed a weight load, and none showed a step before the loading was over.
    expect(lines.filter((l) => l.startsWith("Sampling")).some((l) => /weights|Loading/.test(l))).toBe(false);
    expect(screen).toMatch(/saved .*fox\.png \(64x64, seed \d+, sd15\)/);
    expect(readViolations(box.gpuDir)).toEqual([]);
  });

  it("--verbose shows the JSON log above the bars, never inside one", async () => {
    const { exitCode, screen } = await onTerminal(["generate", "a red fox", ...tiny, "--verbose"]);
    expect(exitCode, screen).toBe(0);
    const lines = screenLines(screen);
    const json = lines.filter((l) => l.includes('"level":'));
    expect(json.length).toBeGreaterThan(0);
    // Each log line is a line of its own: it starts with the JSON, no bar around it.
    for (const line of json) expect(line).toMatch(/^\{"level":.*\}$/);
  });
});

describe("diffugen generate piped", () => {
  it("prints plain progress lines, no JSON, and the outcome once", async () => {
    const result = await piped(["generate", "a red fox", ...tiny, "-b", "2"]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).not.toMatch(jsonLine);
    expect(result.stdout).not.toMatch(jsonLine);
    expect(result.stderr).toMatch(/^Sampling image 2\/2 · step 4\/4/m);
    expect(result.stderr).toMatch(/^Done: 2 images$/m);
    expect(result.stderr).not.toContain("Done: Done:");
    expect(fs.readFileSync(path.join(box.dir, "data", "logs", "diffugen.log"), "utf8")).toMatch(/"level":"info"/);
  });

  it("LOG_FORMAT=json puts the JSON log on stderr", async () => {
    const result = await piped(["generate", "a red fox", ...tiny], { LOG_FORMAT: "json" });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toMatch(jsonLine);
  });

  it("a failure is said once", async () => {
    const result = await piped(["generate", "a red fox", ...tiny], { FAKE_SD_CRASH_AT_STEP: "2", FAKE_SD_CRASH_MODE: "exit" });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).not.toMatch(/^Failed:/m);
    const said = result.stderr.split("\n").filter((l) => l.startsWith("diffugen: "));
    expect(said).toHaveLength(1);
  });
});

describe("diffugen generate refused by admission", () => {
  it("a missing sd-cli is refused before the LLM is touched: exit 2, one message, no unload", async () => {
    const result = await piped(["generate", "a red fox", ...tiny], { SD_CPP_BIN: path.join(box.dir, "no-such-sd-cli") });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^diffugen: sd-cli not found: SD_CPP_BIN=.*no-such-sd-cli/m);
    expect(result.stderr.split("\n").filter((l) => l.startsWith("diffugen: "))).toHaveLength(1);
    expect(box.ollama.stats.unload).toBe(0);
    expect(box.ollama.stats.chat).toBe(0);
    expect(box.ollama.listed()).toContain("qwen2.5:3b");
    expect(readSpawns(box.gpuDir)).toEqual([]);
  });
});
