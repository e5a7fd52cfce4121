/**
 * The one invariant (DESIGN.md), end to end on the product as `diffugen serve` builds it
 * (bootstrap: the job runner, the graph, the real GpuScheduler, OllamaResidency,
 * PromptRefiner and sd runner) against the fake Ollama and the sd-cli double, both sharing
 * one simulated 8 GB GPU (tests/fakes/fake-gpu.mjs). Every job is a real graph run started
 * through the job runner (runner.prepare + runner.start), cancelled the way a client that
 * goes away cancels it (the signal given to runner.start). The doubles record a violation
 * whenever the LLM and sd-cli would hold VRAM at once; every test asserts there is none.
 *
 * The random test prints its seed when it fails; replay it with
 *   VRAM_INVARIANT_SEED=<seed> npx vitest run tests/integration/vram-invariant.test.ts
 * (VRAM_INVARIANT_DEBUG=1 also prints how each kind of planned abort ended.)
 */
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it, onTestFailed } from "vitest";
import type { DiffugenStateValue } from "../../graphs/diffugen/state.js";
import type { ProgressEvent } from "../../src/events/progress-event.js";
import type { JobEvent, JobOutcome } from "../../src/jobs/index.js";
import { CARDS, isAlive, readOoms, readSpawns, readViolations, runningDiffusions, type CardSpec } from "../fakes/fake-gpu.mjs";
import { defaultResponder, type Responder } from "../fakes/ollama-server.js";
import { watchResidency } from "../helpers/residency-watch.js";
import { FAST_SD_ENV, LLM_MODEL, SD15_FILE, startStack, type Stack, type StackOptions } from "../helpers/stack.js";
import { sleep, withTimeout } from "../helpers/timing.js";
import { createPrng, seedFromEnv } from "./helpers/prng.js";

const stacks: Stack[] = [];

/**
 * The product's own timing (its /api/ps poll, the scheduler's real waits), with LLM
 * timeouts long enough for a loaded CI box; `sdEnv` tunes the sd-cli double.
 */
async function stackFor(options: { ollama?: StackOptions["ollama"]; env?: Record<string, string>; sdEnv?: Record<string, string>; card?: CardSpec }): Promise<Stack> {
  const stack = await startStack({
    prefix: "diffugen-vram-",
    card: options.card,
    timing: "product",
    ollama: options.ollama,
    env: { REFINE_TIMEOUT_S: "10", UNLOAD_TIMEOUT_S: "10", GENERATION_TIMEOUT_S: "60", ...options.env },
    sdEnv: { ...FAST_SD_ENV, ...options.sdEnv },
  });
  stacks.push(stack);
  return stack;
}

afterEach(async () => {
  await Promise.all(stacks.splice(0).map((s) => s.close()));
});

/** Dumps what a failure needs to be understood: the log tail, the fake's requests, the GPU records. */
function reportOnFailure(stack: Stack, what: () => string = () => ""): void {
  onTestFailed(() => {
    const logs = [
      ...stack.gpuLog.map((l) => ({ at: l.at, line: `gpu ${l.message} ${JSON.stringify(l.fields)}` })),
      ...stack.llmLog.map((l) => ({ at: l.at, line: `${l.source}:${l.level} ${l.message}` })),
    ].sort((a, b) => a.at - b.at);
    console.error(
      [
        what(),
        `violations: ${JSON.stringify(readViolations(stack.gpuDir))}`,
        `scheduler state: ${JSON.stringify(stack.deps.scheduler.state())}`,
        `fake ollama stats: ${JSON.stringify(stack.ollama.stats)}`,
        "log (last 60 lines):",
        ...logs.slice(-60).map((l) => `  ${l.at} ${l.line}`),
      ].join("\n"),
    );
  });
}

/** What every test checks at the end: no job running, nothing held or waiting, no double alive, no violation. */
function expectCleanGpu(stack: Stack, label = ""): void {
  const { gpuDir } = stack;
  expect(readViolations(gpuDir), `${label}violations`).toEqual([]);
  expect(stack.runner.activeJobs, `${label}every job has ended`).toBe(0);
  const state = stack.deps.scheduler.state();
  expect(state.gpu, `${label}no lease held`).toEqual({ kind: "idle" });
  expect(state.queue, `${label}queue empty`).toEqual([]);
  expect(runningDiffusions(gpuDir), `${label}no sd-cli double holds the GPU`).toEqual([]);
  const alive = readSpawns(gpuDir)
    .map((s) => s.pid)
    .filter(isAlive);
  expect(alive, `${label}every sd-cli double spawned has exited`).toEqual([]);
}

// ------------------------------------------------------------------------------------------------
// One image job, through the job runner and the real graph

/** Where a run was: waiting for the LLM, refining, waiting for the GPU, drawing, after it. */
type Stage = "llm_acquire" | "refine" | "diffusion_acquire" | "generate" | "reload";

/** What giving the GPU back set off, as the run's reload step reported it. */
type ReleaseSeen = "handed_over" | "llm_reloaded" | "llm_reload_failed" | "none";

interface ImageJob {
  /** What the user typed. */
  request: string;
  steps: number;
  /** Default 64. */
  size?: number;
  /** The client's signal: aborting it before the answer cancels the job, as a client going away does. */
  signal?: AbortSignal | undefined;
  /** Every progress event, with the stage the run is in when it comes. */
  onEvent?: (event: ProgressEvent, stage: Stage) => void;
}

interface JobRun {
  /** What the client was answered. */
  outcome: JobOutcome;
  /** The run's final state. */
  state: Partial<DiffugenStateValue>;
  /** Every progress event of the run, the LLM reload's included. */
  events: ProgressEvent[];
  /** The stage the run was in when its answer was known (for a failure, the stage that failed). */
  answeredAt: Stage;
  release: ReleaseSeen;
}

/**
 * The stage a run is in, from the nodes it has finished and the events it has sent: the
 * refine node first waits for an LLM lease (only `queued` events) and then refines.
 */
function stageOf(nodes: readonly string[], events: readonly ProgressEvent[]): Stage {
  switch (nodes.at(-1)) {
    case undefined:
      return events.some((e) => e.phase === "refining") ? "refine" : "llm_acquire";
    case "refine":
      return "diffusion_acquire";
    case "unload":
      return "generate";
    default:
      return "reload";
  }
}

function releaseOf(events: readonly ProgressEvent[]): ReleaseSeen {
  const reload = events.filter((e) => e.phase === "reloading_llm");
  if (reload.some((e) => e.kind === "warning" && e.message.startsWith("The LLM could not be reloaded"))) return "llm_reload_failed";
  if (reload.some((e) => e.kind === "status" && e.message.startsWith("Another image job has the GPU"))) return "handed_over";
  if (reload.some((e) => e.kind === "status" && e.progress === 100)) return "llm_reloaded";
  return "none";
}

/**
 * Submits one image request to the job runner as an API route does (prepare, then start
 * with the client's signal) and follows the run to its very end (the LLM reload).
 */
async function runJob(stack: Stack, job: ImageJob): Promise<JobRun> {
  const size = job.size ?? 64;
  const input = stack.runner.prepare({
    mode: "image",
    request: { prompt: job.request, model: "sd15", width: size, height: size, steps: job.steps, seed: 42 },
  });
  const running = stack.runner.start(input, { signal: job.signal });
  const nodes: string[] = [];
  const events: ProgressEvent[] = [];
  let answeredAt: Stage | undefined;
  let previous: JobEvent["type"] | undefined;
  for await (const e of running.events) {
    if (e.type === "node") nodes.push(e.node);
    else if (e.type === "progress") {
      events.push(e.event);
      job.onEvent?.(e.event, stageOf(nodes, events));
    } else if (e.type === "outcome") {
      // Settled by the node that just finished (its images, its failure): the stage that node
      // ran in. Cancelled: the stage the run was in.
      const byNode = e.outcome.kind !== "cancelled" && previous === "node";
      answeredAt = stageOf(byNode ? nodes.slice(0, -1) : nodes, events);
    }
    previous = e.type;
  }
  const { outcome, state } = await running.finished;
  return { outcome, state, events, answeredAt: answeredAt ?? stageOf(nodes, events), release: releaseOf(events) };
}

function stepOf(event: ProgressEvent): number | undefined {
  return event.kind === "status" ? event.step?.current : undefined;
}

function describeRun(run: JobRun | undefined): string {
  if (!run) return "no outcome";
  const { outcome } = run;
  switch (outcome.kind) {
    case "images":
      return `images (fellBack ${outcome.refined?.fellBack}, release ${run.release})`;
    case "failed":
      return `failed at ${run.answeredAt}: ${outcome.error.code} in ${outcome.error.node}: ${outcome.error.message}`;
    case "cancelled":
      return `cancelled at ${run.answeredAt}: ${outcome.reason}`;
    case "reply":
      return `reply: ${outcome.text}`;
  }
}

// ------------------------------------------------------------------------------------------------

type AbortPlan =
  /** Never aborted. */
  | { kind: "none" }
  /** Aborted when the run says it is queued for this phase (so while it waits for the GPU). */
  | { kind: "waiting"; phase: "llm" | "diffusion" }
  /** Aborted when sd-cli reports this sampling step (so mid-sampling). */
  | { kind: "sampling"; atStep: number }
  /** Aborted at a random time after the job started, wherever it is. */
  | { kind: "timer"; afterMs: number };

interface JobPlan {
  index: number;
  /** Names the job in its prompt (the fake's responder finds it there) and in reports. */
  jobId: string;
  startAfterMs: number;
  steps: number;
  /** The fake answers this job's refinement with invalid JSON (the refiner falls back). */
  badRefinement: boolean;
  refineDelayMs: number;
  abort: AbortPlan;
}

function planJobs(seed: number, count: number): JobPlan[] {
  const rng = createPrng(seed);
  return Array.from({ length: count }, (_, index): JobPlan => {
    // The double's step time is one for the whole box: jobs differ in their step counts.
    const steps = rng.int(2, 6);
    const roll = rng.next();
    const abort: AbortPlan =
      roll < 0.5
        ? { kind: "none" }
        : roll < 0.65
          ? { kind: "waiting", phase: rng.chance(0.7) ? "diffusion" : "llm" }
          : roll < 0.8
            ? { kind: "sampling", atStep: rng.int(1, steps - 1) }
            : { kind: "timer", afterMs: rng.int(0, 1500) };
    return {
      index,
      jobId: `job-${index}`,
      startAfterMs: rng.int(0, 1200),
      steps,
      badRefinement: rng.chance(0.3),
      refineDelayMs: rng.int(0, 30),
      abort,
    };
  });
}

describe("VRAM invariant on the product (job runner + graph, fake Ollama + sd-cli double)", () => {
  it("20 concurrent jobs with random steps, refinements and aborts: all end, no violation, LLM back", async () => {
    const seed = seedFromEnv("VRAM_INVARIANT_SEED");
    const plans = planJobs(seed, 20);
    const byId = new Map(plans.map((p) => [p.jobId, p]));
    const responder: Responder = async (req) => {
      const plan = byId.get(/\bjob-\d+\b/.exec(req.lastUserMessage)?.[0] ?? "");
      if (plan) await sleep(plan.refineDelayMs);
      if (plan?.badRefinement) return `Sure! Here is a lovely prompt for ${plan.jobId}: {"prompt": "a fox`;
      return defaultResponder(req);
    };
    const boxRng = createPrng(seed ^ 0x5eed);
    const unloadLingerMs = boxRng.int(100, 300);
    const stepMs = boxRng.int(5, 40);
    const stack = await stackFor({
      ollama: { unloadLingerMs, responder },
      env: { MAX_QUEUE: "64" },
      sdEnv: { FAKE_SD_STEP_MS: String(stepMs) },
    });
    const runs = new Map<string, JobRun>();
    /** The jobs the test aborted (their client went away). */
    const aborted = new Set<string>();
    onTestFailed(() => {
      console.error(
        `\nvram-invariant random test FAILED with seed ${seed} (linger ${unloadLingerMs} ms, ${stepMs} ms a step); ` +
          `replay: VRAM_INVARIANT_SEED=${seed} npx vitest run tests/integration/vram-invariant.test.ts`,
      );
      console.error(plans.map((p) => `  ${p.jobId}: ${JSON.stringify({ ...p, outcome: describeRun(runs.get(p.jobId)) })}`).join("\n"));
    });
    reportOnFailure(stack);

    const runOne = async (plan: JobPlan): Promise<void> => {
      await sleep(plan.startAfterMs);
      const client = new AbortController();
      const abort = () => {
        if (client.signal.aborted) return;
        aborted.add(plan.jobId);
        client.abort();
      };
      let timer: NodeJS.Timeout | undefined;
      if (plan.abort.kind === "timer") timer = setTimeout(abort, plan.abort.afterMs);
      const waitingIn = plan.abort.kind === "waiting" ? (plan.abort.phase === "llm" ? "llm_acquire" : "diffusion_acquire") : undefined;
      const atStep = plan.abort.kind === "sampling" ? plan.abort.atStep : undefined;
      try {
        const run = await runJob(stack, {
          request: `draw ${plan.jobId} a red fox in the snow`,
          steps: plan.steps,
          signal: client.signal,
          onEvent: (event, stage) => {
            if (event.phase === "queued" && stage === waitingIn) abort();
            if (atStep !== undefined && stepOf(event) === atStep) abort();
          },
        });
        runs.set(plan.jobId, run);
      } finally {
        clearTimeout(timer);
      }
    };

    // Every job ends (none hangs on the GPU or on sd-cli).
    await withTimeout(Promise.all(plans.map(runOne)), 25_000, "the 20 jobs");
    await withTimeout(stack.deps.scheduler.whenSettled(), 5_000, "scheduler.whenSettled()");

    // Each job ended the way its plan allows.
    for (const plan of plans) {
      const run = runs.get(plan.jobId);
      const label = `${plan.jobId} (seed ${seed}): ${describeRun(run)}`;
      expect(run, label).toBeDefined();
      if (!run) continue;
      const { outcome } = run;
      if (outcome.kind === "images") {
        expect(outcome.images, label).toHaveLength(1);
        expect(outcome.refined?.fellBack, label).toBe(plan.badRefinement);
        expect(["handed_over", "llm_reloaded"], label).toContain(run.release);
      } else {
        // The only other ending is our own abort, as a cancellation: no node recorded a
        // failure (no OOM, no crash, no unload timeout).
        expect(outcome.kind, label).toBe("cancelled");
        expect(aborted.has(plan.jobId), label).toBe(true);
        if (outcome.kind === "cancelled") expect(outcome.reason, label).toBe("the client went away");
        expect(run.state.error, label).toBeUndefined();
      }
      if (plan.abort.kind === "none") expect(outcome.kind, label).toBe("images");
      if (plan.abort.kind === "sampling" && outcome.kind !== "images") expect(run.answeredAt, label).toBe("generate");
    }

    if (process.env.VRAM_INVARIANT_DEBUG) {
      const tally = new Map<string, number>();
      for (const p of plans) {
        const run = runs.get(p.jobId);
        const key = `${p.abort.kind} -> ${run?.outcome.kind === "images" ? "images" : `${run?.outcome.kind}@${run?.answeredAt}`}`;
        tally.set(key, (tally.get(key) ?? 0) + 1);
      }
      console.log(seed, JSON.stringify([...tally]), JSON.stringify(stack.deps.scheduler.stats().diffusionBatches));
    }
    expectCleanGpu(stack);
    // The LLM is back in the fake once everything settled.
    const ps = (await (await fetch(`${stack.ollama.url}/api/ps`)).json()) as { models: { name: string }[] };
    expect(ps.models.map((m) => m.name)).toEqual([LLM_MODEL]);
    expect(stack.deps.scheduler.state().llm).toBe("resident");

    // One unload and one reload per diffusion batch, counted on both sides of the wire.
    const stats = stack.deps.scheduler.stats();
    const batches = stats.diffusionBatches.count;
    expect(batches).toBeGreaterThan(0);
    expect(stats.unloads.count).toBe(batches);
    expect(stats.reloads.count).toBe(batches);
    expect(stack.ollama.stats.unload).toBe(batches);
    expect(stack.ollama.stats.load).toBe(batches);
    expect(stats.failures.unloads + stats.failures.reloads).toBe(0);
    // The model only ever entered VRAM by our preload and our reloads: no chat reloaded it behind our back.
    expect(stack.ollama.stats.modelLoads).toBe(1 + batches);

    // Every job that got as far as sampling spawned one double, and only jobs granted the GPU
    // spawned one (a job aborted right after its grant may stop before sd-cli is started).
    const sampled = plans.filter((p) => {
      const run = runs.get(p.jobId);
      return run?.outcome.kind === "images" || (run?.answeredAt === "generate" && p.abort.kind === "sampling");
    }).length;
    const spawns = readSpawns(stack.gpuDir).length;
    expect(spawns).toBeGreaterThanOrEqual(sampled);
    expect(spawns).toBeLessThanOrEqual(stats.diffusionBatches.jobs);
    expect(stats.grants.diffusion).toBe(stats.diffusionBatches.jobs);
  });

  it("on a 12 GB card under VRAM_POLICY=fit: 16 concurrent jobs of mixed sizes with aborts, the card is never over, and every job not aborted draws", async () => {
    const seed = seedFromEnv("VRAM_INVARIANT_SEED");
    const plans = planJobs(seed, 16);
    const rng = createPrng(seed ^ 0xf17);
    // SD 1.5 at 512 (3 GB) and at 1024 (5.4 GB) both fit beside the 2.5 GB LLM on 12 GB,
    // but not two at once: the scheduler must run them one after the other.
    const sizes = plans.map(() => (rng.next() < 0.7 ? 512 : 1024));
    const stack = await stackFor({
      card: CARDS["12GB"],
      ollama: { modelSizes: { [LLM_MODEL]: 2.5e9 } },
      env: { MAX_QUEUE: "64" },
      sdEnv: { FAKE_SD_STEP_MS: "15" },
    });
    fs.truncateSync(path.join(stack.modelsDir, SD15_FILE), 2 * 2 ** 30);
    onTestFailed(() => console.error(`\nfit random test FAILED with seed ${seed}; ooms: ${JSON.stringify(readOoms(stack.gpuDir))}`));
    reportOnFailure(stack);
    const runs = new Map<string, JobRun>();
    await withTimeout(
      Promise.all(
        plans.map(async (plan, i) => {
          await sleep(plan.startAfterMs);
          const client = new AbortController();
          const timer = plan.abort.kind === "timer" ? setTimeout(() => client.abort(), plan.abort.afterMs) : undefined;
          try {
            runs.set(plan.jobId, await runJob(stack, { request: `draw ${plan.jobId} a fox`, steps: plan.steps, size: sizes[i], signal: client.signal }));
          } finally {
            clearTimeout(timer);
          }
        }),
      ),
      40_000,
      "the 16 jobs",
    );
    await withTimeout(stack.deps.scheduler.whenSettled(), 10_000, "scheduler.whenSettled()");
    for (const plan of plans) {
      const run = runs.get(plan.jobId);
      expect(run, plan.jobId).toBeDefined();
      // Out of memory beside the LLM is retried with the whole GPU: never the client's failure.
      if (run!.outcome.kind === "failed") throw new Error(`${plan.jobId} failed: ${JSON.stringify(run!.outcome.error)}`);
      if (plan.abort.kind !== "timer") expect(run!.outcome.kind, plan.jobId).toBe("images");
    }
    expect(readViolations(stack.gpuDir)).toEqual([]);
    expectCleanGpu(stack);
    // The LLM never had to leave (its state stays as first seen), or came back.
    expect(["unknown", "resident"]).toContain(stack.deps.scheduler.state().llm);
    expect(stack.ollama.listed()).toContain(LLM_MODEL);
    // Drawings ran beside the LLM.
    expect(stack.deps.scheduler.stats().fit?.besideLlm).toBeGreaterThan(0);
  });

  it("slow unload: sd-cli starts only after the lingering model has left /api/ps", async () => {
    const lingerMs = 400;
    const stack = await stackFor({ ollama: { unloadLingerMs: lingerMs }, sdEnv: { FAKE_SD_STEP_MS: "10" } });
    reportOnFailure(stack);
    const watch = watchResidency(stack.gpuDir);
    try {
      const run = await runJob(stack, { request: "draw a lighthouse at dusk", steps: 2 });
      expect(run.outcome.kind, describeRun(run)).toBe("images");
      await stack.deps.scheduler.whenSettled();

      const unloadAt = stack.ollama.requests.find((r) => r.kind === "unload")?.at;
      const [spawn, ...more] = readSpawns(stack.gpuDir);
      const [droppedAt] = watch.drops(LLM_MODEL);
      expect(unloadAt).toBeDefined();
      expect(spawn).toBeDefined();
      expect(more).toEqual([]);
      expect(droppedAt).toBeDefined();
      // The model dropped from /api/ps `lingerMs` after the unload call, and sd-cli came after that.
      expect(droppedAt!).toBeGreaterThanOrEqual(unloadAt! + lingerMs - 5);
      expect(spawn!.at).toBeGreaterThanOrEqual(droppedAt!);
      expect(spawn!.at).toBeGreaterThanOrEqual(unloadAt! + lingerMs);
      expect(stack.deps.scheduler.stats().unloads.lastMs).toBeGreaterThanOrEqual(lingerMs);
      expectCleanGpu(stack);
      expect(stack.ollama.listed()).toEqual([LLM_MODEL]);
    } finally {
      watch.stop();
    }
  });

  it("an unload that never completes: the job fails with unload_timeout before anything is spawned, the LLM stays", async () => {
    const stack = await stackFor({ ollama: { unloadNeverCompletes: true }, env: { UNLOAD_TIMEOUT_S: "0.5" }, sdEnv: { FAKE_SD_STEP_MS: "5" } });
    reportOnFailure(stack);
    const started = Date.now();
    const run = await runJob(stack, { request: "draw a castle on a hill", steps: 2 });
    expect(run.outcome.kind, describeRun(run)).toBe("failed");
    if (run.outcome.kind !== "failed") return;
    expect(run.answeredAt).toBe("diffusion_acquire");
    expect(run.outcome.error).toMatchObject({ code: "unload_timeout", node: "unload" });
    expect(run.outcome.error.message).toContain(`did not unload ${LLM_MODEL}`);
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    // The client was told the LLM would not leave VRAM while it waited for the GPU.
    expect(run.events.some((e) => e.kind === "warning" && e.phase === "unloading_llm")).toBe(true);

    await withTimeout(stack.deps.scheduler.whenSettled(), 5_000, "whenSettled");
    expect(readSpawns(stack.gpuDir)).toEqual([]);
    expectCleanGpu(stack);
    expect(stack.deps.scheduler.stats().failures.unloads).toBe(1);
    // The scheduler put the LLM back so chat keeps working.
    expect(stack.ollama.listed()).toEqual([LLM_MODEL]);

    // Once Ollama unloads again, the next job goes through.
    stack.ollama.configure({ unloadNeverCompletes: false, unloadLingerMs: 100 });
    const next = await runJob(stack, { request: "draw a castle on a hill", steps: 2 });
    expect(next.outcome.kind, describeRun(next)).toBe("images");
    await stack.deps.scheduler.whenSettled();
    expectCleanGpu(stack);
    expect(readSpawns(stack.gpuDir)).toHaveLength(1);
  });

  it("Ollama down: diffusion still runs (nothing to unload), no violation; the LLM comes back with Ollama", async () => {
    const stack = await stackFor({ ollama: { unloadLingerMs: 100 }, sdEnv: { FAKE_SD_STEP_MS: "5" } });
    reportOnFailure(stack);
    await stack.ollama.setFault({ kind: "down" });

    const run = await runJob(stack, { request: "draw a sailing boat", steps: 2 });
    expect(run.outcome.kind, describeRun(run)).toBe("images");
    if (run.outcome.kind !== "images") return;
    expect(run.outcome.refined?.fellBack).toBe(true);
    expect(run.outcome.refined?.prompt).toContain("sailing boat");
    expect(run.release).toBe("llm_reload_failed");
    expect(run.state.warnings?.some((w) => w.startsWith("The LLM could not be reloaded"))).toBe(true);
    await withTimeout(stack.deps.scheduler.whenSettled(), 5_000, "whenSettled");
    expect(readSpawns(stack.gpuDir)).toHaveLength(1);
    expectCleanGpu(stack);

    // Ollama is back: the next job reloads the LLM first, then swaps as usual.
    await stack.ollama.setFault(null);
    const next = await runJob(stack, { request: "draw a sailing boat", steps: 2 });
    expect(next.outcome.kind, describeRun(next)).toBe("images");
    if (next.outcome.kind === "images") expect(next.outcome.refined?.fellBack).toBe(false);
    await withTimeout(stack.deps.scheduler.whenSettled(), 5_000, "whenSettled");
    expectCleanGpu(stack);
    expect(stack.ollama.listed()).toEqual([LLM_MODEL]);
  });

  it("sd-cli crashes mid-sampling: the job fails, the next one still runs, the LLM is reloaded once", async () => {
    // The double dies at its 3rd step: the 4-step job crashes, the 2-step one never gets there.
    const stack = await stackFor({ ollama: { unloadLingerMs: 150 }, sdEnv: { FAKE_SD_STEP_MS: "20", FAKE_SD_CRASH_AT_STEP: "3" } });
    reportOnFailure(stack);
    const steps: number[] = [];
    const [crashed, after] = await Promise.all([
      runJob(stack, {
        request: "draw a volcano erupting",
        steps: 4,
        onEvent: (event) => {
          const step = stepOf(event);
          if (step !== undefined) steps.push(step);
        },
      }),
      sleep(20).then(() => runJob(stack, { request: "draw a quiet lake", steps: 2 })),
    ]);
    expect(crashed.outcome.kind, describeRun(crashed)).toBe("failed");
    if (crashed.outcome.kind !== "failed") return;
    expect(crashed.answeredAt).toBe("generate");
    expect(crashed.outcome.error).toMatchObject({ code: "sd_failed", node: "diffuse" });
    expect(crashed.outcome.error.message).toContain("CUDA error");
    expect(steps).toEqual([1, 2]);
    expect(after.outcome.kind, describeRun(after)).toBe("images");

    await withTimeout(stack.deps.scheduler.whenSettled(), 5_000, "whenSettled");
    expectCleanGpu(stack);
    expect(stack.ollama.listed()).toEqual([LLM_MODEL]);
    const stats = stack.deps.scheduler.stats();
    expect(stats.reloads.count).toBe(stats.diffusionBatches.count);
    expect(stack.ollama.stats.load).toBe(stats.diffusionBatches.count);
  });
});
