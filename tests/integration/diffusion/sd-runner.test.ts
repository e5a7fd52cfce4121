import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  SdAbortedError,
  SdOutputMissingError,
  SdProcessError,
  runSdCli,
  type SdEvent,
} from "../../../src/diffusion/index.js";
import { SdOutputParser } from "../../../src/diffusion/sd-output-parser.js";
import { isAlive, repoRoot } from "./helpers.js";

/**
 * runSdCli against small stand-in programs for what the double does not do: replaying a
 * real capture byte for byte through a real pipe, exiting 0 without an image, ignoring SIGTERM.
 */

const fixturesDir = path.resolve(repoRoot, "../shared/fixtures/sd-cli");
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-runner-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function script(name: string, body: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, `#!/usr/bin/env node\n${body}\n`, { mode: 0o755 });
  return file;
}

/** Writes a capture's chunks with its real gaps (scaled down), then optionally its image. */
function replayer(name: string, writeImage: boolean): string {
  return script(
    `replay-${name}.mjs`,
    `
import fs from "node:fs";
const lines = fs.readFileSync(${JSON.stringify(path.join(fixturesDir, `${name}.timeline.jsonl`))}, "utf8").trim().split("\\n").map((l) => JSON.parse(l));
const start = Date.now();
for (const [ms, stream, data] of lines) {
  const due = start + ms / 100;
  while (Date.now() < due) await new Promise((r) => setTimeout(r, 1));
  if (stream === "exit") {
    if (${writeImage}) fs.copyFileSync(${JSON.stringify(path.join(fixturesDir, "gen-basic.out.png"))}, "out.png");
    process.exit(data.code ?? 1);
  }
  fs.writeSync(stream === "stdout" ? 1 : 2, Buffer.from(data, "base64"));
}
`,
  );
}

describe("runSdCli", () => {
  it("streams a real capture through a real pipe into the same events the parser gives", async () => {
    const events: SdEvent[] = [];
    const result = await runSdCli({
      bin: replayer("gen-basic", true),
      args: [],
      cwd: dir,
      outputPaths: [path.join(dir, "out.png")],
      onEvent: (e) => events.push(e),
    });
    const parser = new SdOutputParser();
    const expected = [...parser.push("stdout", fs.readFileSync(path.join(fixturesDir, "gen-basic.stdout"))), ...parser.end()];
    expect(events.filter((e) => e.type !== "spawned")).toEqual(expected);
    expect(result.images).toEqual([{ path: path.join(dir, "out.png"), seed: 42, index: 0, width: 64, height: 64 }]);
    expect(result.timings.samplingSeconds).toBe(23.22);
    expect(result.timings.generateSeconds).toBe(27.27);
  });

  it("says the GPU is free at a clean exit, before the result (its output read), and not when sd-cli failed or was ended", async () => {
    const order: string[] = [];
    const result = await runSdCli({
      bin: replayer("gen-basic", true),
      args: [],
      cwd: dir,
      outputPaths: [path.join(dir, "out.png")],
      onCleanExit: () => order.push("gpu free"),
    }).then((r) => (order.push("result"), r));
    expect(result.images).toHaveLength(1);
    expect(order).toEqual(["gpu free", "result"]);

    let calls = 0;
    const failed = await runSdCli({ bin: replayer("missing-model", false), args: [], cwd: dir, outputPaths: [path.join(dir, "out.png")], onCleanExit: () => calls++ }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(SdProcessError);
    const controller = new AbortController();
    const ended = await runSdCli({
      bin: replayer("gen-basic", true),
      args: [],
      cwd: dir,
      outputPaths: [path.join(dir, "out.png")],
      signal: controller.signal,
      onCleanExit: () => calls++,
      onEvent: (e) => e.type === "sampling_started" && controller.abort(),
    }).catch((e: unknown) => e);
    expect(ended).toBeInstanceOf(SdAbortedError);
    expect(calls).toBe(0);
  });

  it("treats exit 0 without the image as a failure", async () => {
    const error = await runSdCli({
      bin: replayer("gen-basic", false),
      args: [],
      cwd: dir,
      outputPaths: [path.join(dir, "out.png")],
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SdOutputMissingError);
    expect((error as Error).message).toContain(path.join(dir, "out.png"));
  });

  it("reports a missing -m file with sd-cli's ERROR lines", async () => {
    const error = await runSdCli({
      bin: replayer("missing-model", false),
      args: [],
      cwd: dir,
      outputPaths: [path.join(dir, "out.png")],
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SdProcessError);
    expect((error as SdProcessError).exitCode).toBe(1);
    expect((error as Error).message).toContain("init model loader from file failed: '/nonexistent.safetensors'");
  });

  it("kills a process that ignores SIGTERM with SIGKILL after the grace period", async () => {
    const bin = script(
      "stubborn.mjs",
      `process.on("SIGTERM", () => {});
process.stdout.write("[INFO ] stable-diffusion.cpp:5679 - generating image: 1/1 - seed 1\\n");
setInterval(() => {}, 1000);`,
    );
    const controller = new AbortController();
    let pid = 0;
    const started = Date.now();
    const error = await runSdCli({
      bin,
      args: [],
      cwd: dir,
      outputPaths: [path.join(dir, "out.png")],
      signal: controller.signal,
      killGraceMs: 300,
      onEvent: (e) => {
        if (e.type === "spawned") pid = e.pid;
        if (e.type === "sampling_started") controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SdAbortedError);
    expect(pid).toBeGreaterThan(0);
    expect(isAlive(pid)).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
