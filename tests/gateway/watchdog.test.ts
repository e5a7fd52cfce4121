import fs from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { afterEach, describe, expect, it, vi } from "vitest";
import { diffugenCommand } from "../cli/helpers/diffugen-command.js";
import { readViolations, runningDiffusions } from "../fakes/fake-gpu.mjs";
import { LLM_MODEL, startStack, type ServedStack } from "../helpers/stack.js";
import { until } from "../helpers/until.js";

/**
 * The gate's watchdog, end to end: a client that calls Ollama directly (not through
 * DiffuGen) while an image is being drawn is caught, named in a warning on the log that
 * says how to route it, counted in /metrics, and shown by /health and `diffugen status`.
 */

const OTHER_MODEL = "llama3.2:1b";

let stack: ServedStack | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await stack?.close();
  stack = undefined;
});

/**
 * The JSON lines the product logs on stderr (pino writes them synchronously with
 * fs.writeSync on fd 2), kept here instead of printed, as the stack keeps its own loggers' lines.
 */
function captureStderrLog(): Record<string, unknown>[] {
  const lines: Record<string, unknown>[] = [];
  const write = fs.writeSync.bind(fs) as (...args: unknown[]) => number;
  vi.spyOn(fs, "writeSync").mockImplementation(((fd: number, data: unknown, ...rest: unknown[]) => {
    const text = Buffer.isBuffer(data) ? data.toString("utf8") : String(data);
    if (fd !== 2 || !text.startsWith("{")) return write(fd, data, ...rest);
    for (const line of text.split("\n")) if (line.trim() !== "") lines.push(JSON.parse(line) as Record<string, unknown>);
    return Buffer.byteLength(text);
  }) as typeof fs.writeSync);
  return lines;
}

describe("the gate's bypass watchdog", () => {
  it("catches a model loaded directly in the double during diffusion: a warning naming it, the counter, /health, diffugen status", async () => {
    const log = captureStderrLog();
    stack = await startStack({
      server: {},
      env: { LOG_LEVEL: "warn" },
      ollama: { installed: [LLM_MODEL, OTHER_MODEL] },
      sdEnv: { FAKE_SD_STEP_MS: "150" },
    });
    const s = stack;
    const job = s.runner.start(s.runner.prepare({ mode: "image", request: { prompt: "a red fox", width: 64, height: 64, steps: 20 } }));
    // Once sd-cli has made a step (its model is in VRAM: a load before that would make it fail with OOM).
    for await (const item of job.events) {
      if (item.type === "progress" && item.event.kind === "status" && (item.event.step?.current ?? 0) >= 1) break;
    }
    expect(runningDiffusions(s.gpuDir)).toHaveLength(1);

    // A client that does not go through DiffuGen: straight to Ollama, while sd-cli draws.
    const direct = await fetch(`${s.ollama.url}/api/generate`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: OTHER_MODEL, prompt: "hi", stream: false }),
    });
    expect(direct.status).toBe(200);

    await until("the watchdog to catch it", () => s.app.gate.status().bypasses > 0, 5_000);
    // Still drawing: the watchdog saw it while diffusion held the GPU.
    expect(s.deps.scheduler.state().gpu).toMatchObject({ kind: "diffusion", jobId: job.id });

    const warning = log.find((l) => l.event === "gate_bypass");
    expect(warning).toMatchObject({ level: "warn", component: "gate", model: OTHER_MODEL, job_id: job.id });
    expect(warning?.msg).toMatch(new RegExp(`^Ollama loaded ${OTHER_MODEL.replace(/\./g, "\\.")} while ${job.id} was drawing: a client called Ollama directly, not through DiffuGen`));
    expect(warning?.msg).toContain("set its Ollama base URL to http://127.0.0.1:5199/ollama");
    expect(warning?.msg).toContain("OLLAMA_HOST=127.0.0.1:11435");

    const health = (await (await fetch(`${s.url}/health`)).json()) as { gate: unknown };
    expect(health.gate).toEqual({
      bypasses: 1,
      last: { model: OTHER_MODEL, at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), jobId: job.id },
      watching: true,
    });

    // The job draws on (the fake sd-cli had its memory before the model came); the LLM comes back after it.
    expect((await job.outcome).kind).toBe("images");
    await job.finished;
    await s.deps.scheduler.whenSettled();
    expect(s.app.gate.status()).toMatchObject({ bypasses: 1, watching: false });
    expect(log.filter((l) => l.event === "gate_bypass")).toHaveLength(1);

    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toContain(`diffugen_gate_bypass_total{model="${OTHER_MODEL}"} 1`);

    // The double saw it too: exactly the one breach, by the bypassing model.
    const violations = readViolations(s.gpuDir);
    expect(violations).toHaveLength(1);
    expect(violations[0]).toMatchObject({ by: "ollama", what: expect.stringContaining(`${OTHER_MODEL} loaded`) });

    // diffugen status says it in one line, with what to do; --json carries /health's gate.
    const env = { PATH: path.join(s.root, "no-bin"), MODELS_DIR: s.modelsDir, DATA_DIR: path.join(s.root, "status-data"), OLLAMA_BASE_URL: s.ollama.url };
    const command = diffugenCommand("status", "--url", s.url);
    const text = await execa(command.file, command.args, { cwd: s.root, reject: false, extendEnv: false, env });
    expect(text.exitCode, text.stderr).toBe(0);
    expect(text.stdout).toMatch(
      new RegExp(`Gate: 1 model load behind DiffuGen's back while drawing \\(last ${OTHER_MODEL.replace(/\./g, "\\.")}, \\d+ s ago\\); set that client's Ollama URL to ${s.url}/ollama`),
    );
    const json = await execa(command.file, [...command.args, "--json"], { cwd: s.root, reject: false, extendEnv: false, env });
    expect(JSON.parse(json.stdout).server.health.gate).toMatchObject({ bypasses: 1, last: { model: OTHER_MODEL }, watching: false });
  });
});
