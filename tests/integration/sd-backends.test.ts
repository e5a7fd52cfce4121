/**
 * The two diffusion backends end to end, on the product as `diffugen serve` builds it
 * (bootstrap, the job runner, the real graph and GpuScheduler) against the fake Ollama,
 * the sd-cli double and the sd-server double, sharing one simulated GPU. Each scenario
 * runs with SD_BACKEND=server and again with SD_BACKEND=cli: what a client sees is the
 * same, only the number of model loads differs.
 *
 * Every test ends with the GPU clean: no violation recorded by either double (the LLM
 * and an sd process never held VRAM at once), no lease, no process alive, and the LLM
 * resident again with no sd-server left.
 */
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it, onTestFailed } from "vitest";
import { completePngInfo } from "../../src/diffusion/index.js";
import type { ProgressEvent } from "../../src/events/progress-event.js";
import { createLogger } from "../../src/logging/index.js";
import type { JobOutcome } from "../../src/jobs/index.js";
import { isEndEvent } from "../../src/jobs/job-record.js";
import { readSpawns, readViolations, runningDiffusions } from "../fakes/fake-gpu.mjs";
import { aliveDoubles, FAST_SD_ENV, LLM_MODEL, repoRoot, startStack, type Stack } from "../helpers/stack.js";
import { withTimeout } from "../helpers/timing.js";
import { startServerStack } from "../server/harness.js";

const sdServerDouble = path.join(repoRoot, "tests/fakes/sd-server.mjs");
const stacks: Stack[] = [];

afterEach(async () => {
  await Promise.all(stacks.splice(0).map((s) => s.close()));
});

type Backend = "server" | "cli";

async function stackFor(backend: Backend, sdEnv: Record<string, string> = {}, modelFiles?: string[]): Promise<Stack> {
  const stack = await startStack({
    prefix: `diffugen-backend-${backend}-`,
    env: { SD_BACKEND: backend, SD_SERVER_BIN: sdServerDouble, GENERATION_TIMEOUT_S: "60", MAX_BATCH: "8" },
    sdEnv: { ...FAST_SD_ENV, FAKE_SD_STEP_MS: "15", FAKE_SD_LISTEN_MS: "5", ...sdEnv },
    modelFiles,
  });
  stacks.push(stack);
  onTestFailed(() => {
    console.error(
      [
        `violations: ${JSON.stringify(readViolations(stack.gpuDir))}`,
        `spawns: ${JSON.stringify(readSpawns(stack.gpuDir).map((s) => s.argv.slice(0, 1)))}`,
        ...stack.gpuLog.slice(-40).map((l) => `  ${l.at} ${l.message} ${JSON.stringify(l.fields)}`),
      ].join("\n"),
    );
  });
  return stack;
}

interface Drawn {
  id: string;
  outcome: JobOutcome;
  events: ProgressEvent[];
}

/** One image job through the job runner, as a client's request starts it; resolves once the job has ended. */
async function draw(stack: Stack, request: Record<string, unknown>, options: { signal?: AbortSignal; previews?: boolean } = {}): Promise<Drawn> {
  const input = stack.runner.prepare({
    mode: "image",
    refinePrompt: false,
    previews: options.previews,
    request: { prompt: "a red fox", width: 64, height: 64, steps: 4, ...request },
  });
  const job = stack.runner.start(input, { signal: options.signal, events: false });
  const outcome = await withTimeout(job.outcome, 60_000, "the job's answer");
  await withTimeout(job.finished, 60_000, "the job's end");
  // What the job journaled, as GET /v1/jobs/:id/events replays it.
  const events: ProgressEvent[] = [];
  for await (const stored of stack.runner.follow(job.id, 0)) if (!isEndEvent(stored.event)) events.push(stored.event);
  return { id: job.id, outcome, events };
}

/** Who spawned what on this GPU: sd-server and sd-cli doubles. */
function spawned(stack: Stack): { server: number; cli: number } {
  const spawns = readSpawns(stack.gpuDir);
  const server = spawns.filter((s) => s.argv.some((a) => a.includes("--listen-port"))).length;
  return { server, cli: spawns.length - server };
}

async function expectCleanGpu(stack: Stack): Promise<void> {
  await withTimeout(stack.deps.scheduler.whenSettled(), 20_000, "the scheduler to settle (LLM back)");
  expect(readViolations(stack.gpuDir), "violations").toEqual([]);
  expect(stack.deps.scheduler.state().gpu).toEqual({ kind: "idle" });
  expect(stack.deps.scheduler.state().llm).toBe("resident");
  expect(stack.ollama.listed(), "the LLM is back").toContain(LLM_MODEL);
  expect(runningDiffusions(stack.gpuDir), "no sd process holds the GPU").toEqual([]);
  expect(aliveDoubles(stack.gpuDir), "no sd process alive").toEqual([]);
  expect(stack.deps.backends.health().server, "no sd-server kept").toBeUndefined();
}

function stepsOf(events: readonly ProgressEvent[]): number[] {
  return events.flatMap((e) => (e.kind === "status" && e.step !== undefined ? [e.step.current] : []));
}

function images(outcome: JobOutcome) {
  if (outcome.kind !== "images") throw new Error(`expected images, got ${JSON.stringify(outcome)}`);
  return outcome.images;
}

describe.each(["server", "cli"] as const)("SD_BACKEND=%s", (backend) => {
  it("draws a burst of 4 same-model jobs with per-step progress each: one model load on sd-server, one per job on sd-cli", async () => {
    const stack = await stackFor(backend);
    const jobs = await Promise.all([0, 1, 2, 3].map((i) => draw(stack, { seed: 100 + i })));
    for (const [i, job] of jobs.entries()) {
      const [image] = images(job.outcome);
      expect(image!.seed).toBe(100 + i);
      const png = completePngInfo(fs.readFileSync(image!.path));
      expect(png).toEqual({ width: 64, height: 64 });
      expect(stepsOf(job.events)).toEqual([1, 2, 3, 4]);
    }
    const counts = spawned(stack);
    expect(counts).toEqual(backend === "server" ? { server: 1, cli: 0 } : { server: 0, cli: 4 });
    expect(stack.deps.backends.stats().loads[backend]).toBe(backend === "server" ? 1 : 4);
    // One burst: the LLM went out once and came back once.
    await expectCleanGpu(stack);
    const gpu = stack.deps.scheduler.stats();
    expect([gpu.unloads.count, gpu.reloads.count]).toEqual([1, 1]);
    await expectCleanGpu(stack);
  });
});

/** Waits until the job has journaled a sampling step (it is drawing now). */
async function untilSampling(stack: Stack, id: string): Promise<void> {
  for await (const stored of stack.runner.follow(id, 0)) {
    if (isEndEvent(stored.event)) throw new Error("the job ended before sampling");
    if (stored.event.kind === "status" && stored.event.step !== undefined) return;
  }
}

describe.each(["server", "cli"] as const)("SD_BACKEND=%s, the hard cases", (backend) => {
  it("restarts sd-server when the next job of the burst needs another model", async () => {
    const stack = await stackFor(backend, {}, ["v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors", "sdxl_vae.safetensors"]);
    const jobs = await Promise.all([
      draw(stack, { model: "sd15", seed: 1 }),
      draw(stack, { model: "sdxl", seed: 2, width: 256, height: 256 }),
      draw(stack, { model: "sd15", seed: 3 }),
    ]);
    expect(jobs.map((job) => images(job.outcome)[0]!.seed)).toEqual([1, 2, 3]);
    await expectCleanGpu(stack);
    const stats = stack.deps.backends.stats();
    if (backend === "server") {
      expect(spawned(stack)).toEqual({ server: 3, cli: 0 });
      expect(stats.serverStops).toMatchObject({ model_change: 2, burst_end: 1 });
      // Each sd-server was given the files of its own model.
      const argvs = readSpawns(stack.gpuDir).map((s) => s.argv.join(" "));
      expect(argvs.map((a) => (a.includes("sd_xl_base") ? "sdxl" : "sd15"))).toEqual(["sd15", "sdxl", "sd15"]);
    } else {
      expect(spawned(stack)).toEqual({ server: 0, cli: 3 });
    }
  });

  it("cancels a job mid-sampling with no process left behind, and the next job of the burst still draws", async () => {
    const stack = await stackFor(backend, { FAKE_SD_STEP_MS: "80" });
    const first = stack.runner.start(stack.runner.prepare({ mode: "image", refinePrompt: false, request: { prompt: "a slow fox", width: 64, height: 64, steps: 20 } }), { events: false });
    const second = draw(stack, { seed: 7 });
    await withTimeout(untilSampling(stack, first.id), 20_000, "the first job to sample");
    expect(stack.runner.cancel(first.id, "the user pressed stop")).toBe(true);
    expect((await first.outcome).kind).toBe("cancelled");
    const next = await second;
    expect(images(next.outcome)[0]!.seed).toBe(7);
    await expectCleanGpu(stack);
    if (backend === "server") {
      // sd-server cannot stop a generation: the process was ended and the next job started another.
      expect(spawned(stack).server).toBe(2);
      expect(stack.deps.backends.stats().serverStops).toMatchObject({ cancel: 1, burst_end: 1 });
    }
  });

  it("turns a crash mid-request into a typed error with sd.cpp's last words, then draws again", async () => {
    const stack = await stackFor(backend, { FAKE_SD_CRASH_AT_STEP: "2" });
    const crashed = await draw(stack, { seed: 5 });
    expect(crashed.outcome.kind).toBe("failed");
    if (crashed.outcome.kind !== "failed") return;
    expect(crashed.outcome.error.code).toBe("sd_failed");
    // The CUDA error sd.cpp printed before it died, not "socket hang up".
    expect(crashed.outcome.error.message).toMatch(/CUDA error/);
    expect(crashed.outcome.error.message).toContain(backend === "server" ? "sd-server" : "sd-cli");
    await expectCleanGpu(stack);

    delete stack.deps.sdEnv!.FAKE_SD_CRASH_AT_STEP;
    const after = await draw(stack, { seed: 6 });
    expect(images(after.outcome)[0]!.seed).toBe(6);
    await expectCleanGpu(stack);
  });

  it("reports sd.cpp running out of memory as out-of-memory, and frees the GPU", async () => {
    const stack = await stackFor(backend, { FAKE_SD_OOM: "1" });
    const job = await draw(stack, { seed: 8 });
    expect(job.outcome.kind).toBe("failed");
    if (job.outcome.kind !== "failed") return;
    expect(job.outcome.error.code).toBe("out_of_memory");
    expect(job.outcome.error.message).toMatch(/out of memory/i);
    await expectCleanGpu(stack);
  });

  it("answers the OpenAI SDK with a batch of 2 real PNGs", async () => {
    const s = await startServerStack({
      prefix: `diffugen-backend-sdk-${backend}-`,
      env: { SD_BACKEND: backend, SD_SERVER_BIN: sdServerDouble },
      sdEnv: { ...FAST_SD_ENV, FAKE_SD_STEP_MS: "10", FAKE_SD_LISTEN_MS: "5" },
      server: { logger: createLogger({ level: "silent" }) },
    });
    stacks.push(s.stack);
    const answer = await s.client.images.generate({ prompt: "two foxes", size: "64x64", n: 2, steps: 4, seed: 21, refine: false } as never);
    expect(answer.data).toHaveLength(2);
    for (const image of answer.data ?? []) {
      expect(completePngInfo(Buffer.from(image.b64_json!, "base64"))).toEqual({ width: 64, height: 64 });
    }
    expect(s.stack.deps.backends.health().lastBackend).toBe(backend);
    await expectCleanGpu(s.stack);
    expect(spawned(s.stack)).toEqual(backend === "server" ? { server: 1, cli: 0 } : { server: 0, cli: 1 });
  });

  it("draws a job that asks for previews on sd-cli, which writes them", async () => {
    const stack = await stackFor(backend);
    const job = await draw(stack, { seed: 9 }, { previews: true });
    expect(images(job.outcome)[0]!.seed).toBe(9);
    // The store keeps previews only while a job runs; the argv shows sd-cli was asked for them.
    expect(spawned(stack)).toEqual({ server: 0, cli: 1 });
    expect(readSpawns(stack.gpuDir)[0]!.argv).toContain("--preview");
    await expectCleanGpu(stack);
  });
});
