/**
 * The one invariant (DESIGN.md), end to end on the real stack: the real GpuScheduler,
 * OllamaControl and PromptRefiner against the fake Ollama, and the real generateImages
 * spawning the sd-cli double, both doubles sharing one simulated 8 GB GPU
 * (tests/fakes/fake-gpu.mjs). The doubles record a violation whenever the LLM and sd-cli
 * would hold VRAM at once; every test asserts there is none.
 *
 * The random test prints its seed when it fails; replay it with
 *   VRAM_INVARIANT_SEED=<seed> npx vitest run tests/integration/vram-invariant.test.ts
 * (VRAM_INVARIANT_DEBUG=1 also prints how each kind of planned abort ended.)
 */
import { afterEach, describe, expect, it, onTestFailed } from "vitest";
import { SdAbortedError, SdError, SdProcessError, type SdEvent } from "../../src/diffusion/index.js";
import { AcquireAbortedError, type GpuEvent, type GpuPhase } from "../../src/gpu/index.js";
import { UnloadTimeoutError } from "../../src/llm/index.js";
import { isAlive, readSpawns, readViolations, runningDiffusions } from "../fakes/fake-gpu.mjs";
import { defaultResponder, type Responder } from "../fakes/ollama-server.js";
import {
  LLM_MODEL,
  runImageJob,
  sleep,
  startGpuStack,
  watchResidency,
  withTimeout,
  type GpuStack,
  type GpuStackOptions,
  type ImageJobOutcome,
} from "./helpers/gpu-stack.js";
import { createPrng, seedFromEnv } from "./helpers/prng.js";

const stacks: GpuStack[] = [];

async function stackFor(options: GpuStackOptions): Promise<GpuStack> {
  const stack = await startGpuStack(options);
  stacks.push(stack);
  return stack;
}

afterEach(async () => {
  await Promise.all(stacks.splice(0).map((s) => s.close()));
});

/** Dumps what a failure needs to be understood: the log tail, the fake's requests, the GPU records. */
function reportOnFailure(stack: GpuStack, what: () => string = () => ""): void {
  onTestFailed(() => {
    const { gpuDir } = stack.dirs;
    console.error(
      [
        what(),
        `violations: ${JSON.stringify(readViolations(gpuDir))}`,
        `scheduler state: ${JSON.stringify(stack.scheduler.state())}`,
        `fake ollama stats: ${JSON.stringify(stack.ollama.stats)}`,
        "log (last 60 lines):",
        ...stack.logs.slice(-60).map((l) => `  ${l.at} ${l.source} ${l.message}`),
      ].join("\n"),
    );
  });
}

/** What every test checks at the end: nothing held, nothing waiting, no double alive, no violation. */
function expectCleanGpu(stack: GpuStack, label = ""): void {
  const { gpuDir } = stack.dirs;
  expect(readViolations(gpuDir), `${label}violations`).toEqual([]);
  const state = stack.scheduler.state();
  expect(state.gpu, `${label}no lease held`).toEqual({ kind: "idle" });
  expect(state.queue, `${label}queue empty`).toEqual([]);
  expect(runningDiffusions(gpuDir), `${label}no sd-cli double holds the GPU`).toEqual([]);
  const alive = readSpawns(gpuDir)
    .map((s) => s.pid)
    .filter(isAlive);
  expect(alive, `${label}every sd-cli double spawned has exited`).toEqual([]);
}

function stepOf(event: SdEvent): number | undefined {
  return event.type === "step" ? event.step : undefined;
}

// ------------------------------------------------------------------------------------------------

type AbortPlan =
  /** Never aborted. */
  | { kind: "none" }
  /** Aborted when the scheduler says it is queued (so while it waits for the GPU). */
  | { kind: "waiting"; phase: GpuPhase }
  /** Aborted when sd-cli reports this sampling step (so mid-sampling). */
  | { kind: "sampling"; atStep: number }
  /** Aborted at a random time after the job started, wherever it is. */
  | { kind: "timer"; afterMs: number };

interface JobPlan {
  index: number;
  jobId: string;
  startAfterMs: number;
  steps: number;
  stepMs: number;
  /** The fake answers this job's refinement with invalid JSON (the refiner falls back). */
  badRefinement: boolean;
  refineDelayMs: number;
  abort: AbortPlan;
}

function planJobs(seed: number, count: number): JobPlan[] {
  const rng = createPrng(seed);
  return Array.from({ length: count }, (_, index): JobPlan => {
    const steps = rng.int(2, 4);
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
      stepMs: rng.int(5, 40),
      badRefinement: rng.chance(0.3),
      refineDelayMs: rng.int(0, 30),
      abort,
    };
  });
}

describe("VRAM invariant on the real stack (fake Ollama + sd-cli double)", () => {
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
    const stack = await stackFor({ unloadLingerMs: createPrng(seed ^ 0x5eed).int(100, 300), responder, maxQueue: 64 });
    const outcomes = new Map<string, ImageJobOutcome>();
    /** The abort reason of each job the test aborted. */
    const aborted = new Map<string, Error>();
    onTestFailed(() => {
      console.error(`\nvram-invariant random test FAILED with seed ${seed}; replay: VRAM_INVARIANT_SEED=${seed} npx vitest run tests/integration/vram-invariant.test.ts`);
      console.error(plans.map((p) => `  ${p.jobId}: ${JSON.stringify({ ...p, outcome: describeOutcome(outcomes.get(p.jobId)) })}`).join("\n"));
    });
    reportOnFailure(stack);

    const runOne = async (plan: JobPlan): Promise<void> => {
      await sleep(plan.startAfterMs);
      const controller = new AbortController();
      const abort = (why: string) => {
        if (controller.signal.aborted) return;
        const reason = new Error(`test abort (${why})`);
        aborted.set(plan.jobId, reason);
        controller.abort(reason);
      };
      let timer: NodeJS.Timeout | undefined;
      if (plan.abort.kind === "timer") timer = setTimeout(() => abort("timer"), plan.abort.afterMs);
      const waitPhase = plan.abort.kind === "waiting" ? plan.abort.phase : undefined;
      const atStep = plan.abort.kind === "sampling" ? plan.abort.atStep : undefined;
      try {
        const outcome = await runImageJob(stack, {
          jobId: plan.jobId,
          request: `draw ${plan.jobId} a red fox in the snow`,
          steps: plan.steps,
          signal: controller.signal,
          sdEnv: { FAKE_SD_STEP_MS: String(plan.stepMs) },
          onGpuEvent: (phase: GpuPhase, event: GpuEvent) => {
            if (event.type === "queued" && phase === waitPhase) abort(`waiting for ${phase}`);
          },
          onSdEvent: (event) => {
            if (atStep !== undefined && stepOf(event) === atStep) abort(`at step ${atStep}`);
          },
        });
        outcomes.set(plan.jobId, outcome);
      } finally {
        clearTimeout(timer);
      }
    };

    // Every job ends (none hangs on the GPU or on sd-cli).
    await withTimeout(Promise.all(plans.map(runOne)), 25_000, "the 20 jobs");
    await withTimeout(stack.scheduler.whenSettled(), 5_000, "scheduler.whenSettled()");

    // Each job ended the way its plan allows.
    for (const plan of plans) {
      const outcome = outcomes.get(plan.jobId);
      const label = `${plan.jobId} (seed ${seed}): ${describeOutcome(outcome)}`;
      expect(outcome, label).toBeDefined();
      if (!outcome) continue;
      if (outcome.kind === "done") {
        expect(outcome.result.images, label).toHaveLength(1);
        expect(outcome.refined.fellBack, label).toBe(plan.badRefinement);
        expect(["handed_over", "llm_reloaded"], label).toContain(outcome.release.kind);
      } else {
        // The only failures are our own aborts, each reported the way its stage reports one:
        // no OOM, no crash, no unload timeout.
        const reason = aborted.get(plan.jobId);
        expect(reason, label).toBeDefined();
        if (outcome.stage === "refine") expect(outcome.error, label).toBe(reason);
        else if (outcome.stage === "generate") expect(outcome.error, label).toBeInstanceOf(SdAbortedError);
        else expect(outcome.error, label).toBeInstanceOf(AcquireAbortedError);
      }
      if (plan.abort.kind === "none") expect(outcome.kind, label).toBe("done");
      if (plan.abort.kind === "sampling" && outcome.kind === "failed") expect(outcome.stage, label).toBe("generate");
    }

    if (process.env.VRAM_INVARIANT_DEBUG) {
      const tally = new Map<string, number>();
      for (const p of plans) {
        const o = outcomes.get(p.jobId);
        const key = `${p.abort.kind} -> ${o?.kind === "failed" ? `failed@${o.stage}` : o?.kind}`;
        tally.set(key, (tally.get(key) ?? 0) + 1);
      }
      console.log(seed, JSON.stringify([...tally]), JSON.stringify(stack.scheduler.stats().diffusionBatches));
    }
    expectCleanGpu(stack);
    // The LLM is back in the fake once everything settled.
    const ps = (await (await fetch(`${stack.ollama.url}/api/ps`)).json()) as { models: { name: string }[] };
    expect(ps.models.map((m) => m.name)).toEqual([LLM_MODEL]);
    expect(stack.scheduler.state().llm).toBe("resident");

    // One unload and one reload per diffusion batch, counted on both sides of the wire.
    const stats = stack.scheduler.stats();
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
      const o = outcomes.get(p.jobId);
      return o?.kind === "done" || (o?.stage === "generate" && p.abort.kind === "sampling");
    }).length;
    const spawns = readSpawns(stack.dirs.gpuDir).length;
    expect(spawns).toBeGreaterThanOrEqual(sampled);
    expect(spawns).toBeLessThanOrEqual(stats.diffusionBatches.jobs);
    expect(stats.grants.diffusion).toBe(stats.diffusionBatches.jobs);
  });

  it("slow unload: sd-cli starts only after the lingering model has left /api/ps", async () => {
    const lingerMs = 400;
    const stack = await stackFor({ unloadLingerMs: lingerMs });
    reportOnFailure(stack);
    const watch = watchResidency(stack.dirs.gpuDir);
    try {
      const outcome = await runImageJob(stack, { jobId: "slow", request: "draw a lighthouse at dusk", steps: 2, sdEnv: { FAKE_SD_STEP_MS: "10" } });
      expect(outcome.kind, describeOutcome(outcome)).toBe("done");
      await stack.scheduler.whenSettled();

      const unloadAt = stack.ollama.requests.find((r) => r.kind === "unload")?.at;
      const [spawn, ...more] = readSpawns(stack.dirs.gpuDir);
      const [droppedAt] = watch.drops(LLM_MODEL);
      expect(unloadAt).toBeDefined();
      expect(spawn).toBeDefined();
      expect(more).toEqual([]);
      expect(droppedAt).toBeDefined();
      // The model dropped from /api/ps `lingerMs` after the unload call, and sd-cli came after that.
      expect(droppedAt!).toBeGreaterThanOrEqual(unloadAt! + lingerMs - 5);
      expect(spawn!.at).toBeGreaterThanOrEqual(droppedAt!);
      expect(spawn!.at).toBeGreaterThanOrEqual(unloadAt! + lingerMs);
      expect(stack.scheduler.stats().unloads.lastMs).toBeGreaterThanOrEqual(lingerMs);
      expectCleanGpu(stack);
      expect(stack.ollama.listed()).toEqual([LLM_MODEL]);
    } finally {
      watch.stop();
    }
  });

  it("an unload that never completes: the diffusion acquire rejects with UnloadTimeoutError, nothing spawned", async () => {
    const stack = await stackFor({ unloadNeverCompletes: true, env: { UNLOAD_TIMEOUT_S: "0.5" } });
    reportOnFailure(stack);
    const events: GpuEvent[] = [];
    const started = Date.now();
    const outcome = await runImageJob(stack, {
      jobId: "stuck",
      request: "draw a castle on a hill",
      steps: 2,
      onGpuEvent: (phase, event) => phase === "diffusion" && events.push(event),
    });
    expect(outcome.kind, describeOutcome(outcome)).toBe("failed");
    if (outcome.kind !== "failed") return;
    expect(outcome.stage).toBe("diffusion_acquire");
    expect(outcome.error).toBeInstanceOf(UnloadTimeoutError);
    expect((outcome.error as UnloadTimeoutError).models).toEqual([LLM_MODEL]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    expect(events.map((e) => e.type)).toContain("llm_unload_failed");

    await withTimeout(stack.scheduler.whenSettled(), 5_000, "whenSettled");
    expect(readSpawns(stack.dirs.gpuDir)).toEqual([]);
    expectCleanGpu(stack);
    expect(stack.scheduler.stats().failures.unloads).toBe(1);
    // The scheduler put the LLM back so chat keeps working.
    expect(stack.ollama.listed()).toEqual([LLM_MODEL]);

    // Once Ollama unloads again, the next job goes through.
    stack.ollama.configure({ unloadNeverCompletes: false, unloadLingerMs: 100 });
    const next = await runImageJob(stack, { jobId: "after", request: "draw a castle on a hill", steps: 2, sdEnv: { FAKE_SD_STEP_MS: "5" } });
    expect(next.kind, describeOutcome(next)).toBe("done");
    await stack.scheduler.whenSettled();
    expectCleanGpu(stack);
    expect(readSpawns(stack.dirs.gpuDir)).toHaveLength(1);
  });

  it("Ollama down: diffusion still runs (nothing to unload), no violation; the LLM comes back with Ollama", async () => {
    const stack = await stackFor({ unloadLingerMs: 100 });
    reportOnFailure(stack);
    await stack.ollama.setFault({ kind: "down" });

    const outcome = await runImageJob(stack, { jobId: "down", request: "draw a sailing boat", steps: 2, sdEnv: { FAKE_SD_STEP_MS: "5" } });
    expect(outcome.kind, describeOutcome(outcome)).toBe("done");
    if (outcome.kind !== "done") return;
    expect(outcome.refined.fellBack).toBe(true);
    expect(outcome.refined.prompt).toContain("sailing boat");
    expect(outcome.release.kind).toBe("llm_reload_failed");
    await withTimeout(stack.scheduler.whenSettled(), 5_000, "whenSettled");
    expect(readSpawns(stack.dirs.gpuDir)).toHaveLength(1);
    expectCleanGpu(stack);

    // Ollama is back: the next job reloads the LLM first, then swaps as usual.
    await stack.ollama.setFault(null);
    const next = await runImageJob(stack, { jobId: "up", request: "draw a sailing boat", steps: 2, sdEnv: { FAKE_SD_STEP_MS: "5" } });
    expect(next.kind, describeOutcome(next)).toBe("done");
    if (next.kind === "done") expect(next.refined.fellBack).toBe(false);
    await withTimeout(stack.scheduler.whenSettled(), 5_000, "whenSettled");
    expectCleanGpu(stack);
    expect(stack.ollama.listed()).toEqual([LLM_MODEL]);
  });

  it("sd-cli crashes mid-sampling: the job fails, the next one still runs, the LLM is reloaded once", async () => {
    const stack = await stackFor({ unloadLingerMs: 150 });
    reportOnFailure(stack);
    const steps: number[] = [];
    const [crashed, after] = await Promise.all([
      runImageJob(stack, {
        jobId: "crash",
        request: "draw a volcano erupting",
        steps: 4,
        sdEnv: { FAKE_SD_STEP_MS: "20", FAKE_SD_CRASH_AT_STEP: "3" },
        onSdEvent: (event) => {
          const step = stepOf(event);
          if (step !== undefined) steps.push(step);
        },
      }),
      sleep(20).then(() => runImageJob(stack, { jobId: "after", request: "draw a quiet lake", steps: 2, sdEnv: { FAKE_SD_STEP_MS: "5" } })),
    ]);
    expect(crashed.kind, describeOutcome(crashed)).toBe("failed");
    if (crashed.kind !== "failed") return;
    expect(crashed.stage).toBe("generate");
    expect(crashed.error).toBeInstanceOf(SdProcessError);
    expect(steps).toEqual([1, 2]);
    expect(after.kind, describeOutcome(after)).toBe("done");

    await withTimeout(stack.scheduler.whenSettled(), 5_000, "whenSettled");
    expectCleanGpu(stack);
    expect(stack.ollama.listed()).toEqual([LLM_MODEL]);
    const stats = stack.scheduler.stats();
    expect(stats.reloads.count).toBe(stats.diffusionBatches.count);
    expect(stack.ollama.stats.load).toBe(stats.diffusionBatches.count);
  });
});

function describeOutcome(outcome: ImageJobOutcome | undefined): string {
  if (!outcome) return "no outcome";
  if (outcome.kind === "done") return `done (fellBack ${outcome.refined.fellBack}, release ${outcome.release.kind})`;
  const error = outcome.error;
  const name = error instanceof SdError || error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return `failed at ${outcome.stage}: ${name}`;
}
