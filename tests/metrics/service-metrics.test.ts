import { describe, expect, it } from "vitest";
import type { GpuSchedulerStats } from "../../src/gpu/index.js";
import type { JobEvent, JobOutcome, JobResult } from "../../src/jobs/index.js";
import type { JobInfo } from "../../src/jobs/job-observer.js";
import { ServiceMetrics } from "../../src/metrics/index.js";
import { DurationFollower } from "../../src/metrics/duration-follower.js";
import { parsePrometheusText, sampleValue, samplesOf } from "./prometheus-text.js";

/** A scheduler's stats() whose figures the test sets. */
class FakeScheduler {
  unloads: number[] = [];
  reloads: number[] = [];
  failures = { unloads: 0, reloads: 0 };
  gpu: GpuSchedulerStats["gpu"] = { kind: "idle" };
  llm: GpuSchedulerStats["llm"]["state"] = "resident";
  queue: GpuSchedulerStats["queue"] = [];

  stats(): GpuSchedulerStats {
    const summary = (ms: number[]) => ({
      count: ms.length,
      meanMs: ms.length === 0 ? 0 : ms.reduce((a, b) => a + b, 0) / ms.length,
      lastMs: ms.at(-1),
      maxMs: Math.max(0, ...ms),
    });
    const none = summary([]);
    return {
      llm: { state: this.llm, since: 0 },
      gpu: this.gpu,
      queue: this.queue,
      unloads: summary(this.unloads),
      reloads: summary(this.reloads),
      failures: { ...this.failures, last: undefined },
      waits: { llm: none, diffusion: none },
      holds: { llm: none, diffusion: none },
      grants: { llm: 0, diffusion: 0 },
      diffusionBatches: { count: 0, jobs: 0, lastSize: undefined, maxSize: 0 },
      rejected: { queueFull: 0, aborted: 0, closed: 0, conflicts: 0 },
    };
  }
}

const info = (id: string, mode: JobInfo["mode"] = "image"): JobInfo => ({ id, mode, requestedModel: undefined, startedAt: 0 });

let seq = 0;
function step(current: number, total: number, secondsPerStep: number, image = 1): JobEvent {
  return {
    type: "progress",
    seq: ++seq,
    event: {
      kind: "status",
      phase: "sampling",
      progress: 50,
      message: `step ${current}/${total}`,
      at: 0,
      step: { current, total, secondsPerStep, image: { index: image, count: 1 } },
    },
  } as JobEvent;
}

function imagesOutcome(model: string, count = 1): JobOutcome {
  const images = Array.from({ length: count }, (_, index) => ({ path: `/out/${index}.png`, seed: 1 + index, width: 64, height: 64, index }));
  return { kind: "images", images, model, prompt: "a red fox", negativePrompt: "", params: { steps: 3 } as never, refined: undefined, warnings: [] };
}

const outcomeEvent = (outcome: JobOutcome): JobEvent => ({ type: "outcome", outcome, seq: ++seq }) as JobEvent;
const result = (outcome: JobOutcome): JobResult => ({ outcome, state: {} });

/** Runs one job through the observer the way the runner does. */
function runJob(metrics: ServiceMetrics, id: string, events: JobEvent[], outcome: JobOutcome, mode: JobInfo["mode"] = "image") {
  const job = info(id, mode);
  metrics.jobStarted(job);
  for (const event of events) metrics.jobEvent(job, event);
  metrics.jobEvent(job, outcomeEvent(outcome));
  metrics.jobFinished(job, result(outcome), 1500);
}

async function scrape(metrics: ServiceMetrics) {
  return parsePrometheusText(await metrics.render());
}

describe("ServiceMetrics", () => {
  it("seconds per step: sd.cpp's own step times, per model, only from runs that delivered images", async () => {
    const metrics = new ServiceMetrics({ scheduler: new FakeScheduler(), processMetrics: false });
    runJob(metrics, "job-a", [step(1, 3, 0.5), step(2, 3, 0.25), step(2, 3, 0.25), step(3, 3, 0.75)], imagesOutcome("sd15"));
    runJob(metrics, "job-b", [step(1, 2, 2), step(2, 2, 4)], imagesOutcome("flux-schnell", 2));
    // A crash half-way: its steps say nothing reliable about the model's speed.
    runJob(metrics, "job-c", [step(1, 3, 9)], { kind: "failed", error: { code: "sd_crashed", message: "boom", node: "diffuse" }, warnings: [] });

    const stats = metrics.snapshot();
    // Step 2's bar came twice (redrawn): it is one step.
    expect(stats.seconds_per_step).toEqual({ "flux-schnell": { mean: 3, samples: 2 }, sd15: { mean: 0.5, samples: 3 } });
    expect(stats.images).toBe(3);
    expect(stats.failures).toBe(1);
    expect(stats.jobs).toEqual({ started: 3, running: 0, by_outcome: { images: 2, reply: 0, failed: 1, cancelled: 0 } });

    const families = await scrape(metrics);
    expect(sampleValue(families, "diffugen_sampling_step_seconds_count", { model: "sd15" })).toBe(3);
    expect(sampleValue(families, "diffugen_sampling_step_seconds_sum", { model: "sd15" })).toBeCloseTo(1.5);
    expect(sampleValue(families, "diffugen_sampling_step_seconds_count", { model: "flux-schnell" })).toBe(2);
    expect(sampleValue(families, "diffugen_sampling_step_seconds_bucket", { model: "flux-schnell", le: "2" })).toBe(1);
    expect(samplesOf(families, "diffugen_sampling_step_seconds_count")).toHaveLength(2);
    expect(sampleValue(families, "diffugen_images_total")).toBe(3);
    expect(sampleValue(families, "diffugen_jobs_finished_total", { mode: "image", outcome: "failed" })).toBe(1);
    expect(sampleValue(families, "diffugen_jobs_finished_total", { mode: "chat", outcome: "reply" })).toBe(0);
    expect(sampleValue(families, "diffugen_job_duration_seconds_count", { mode: "image", outcome: "images" })).toBe(2);
  });

  it("jobs are running until they are over, and answered as soon as the answer is known", () => {
    const metrics = new ServiceMetrics({ scheduler: new FakeScheduler(), processMetrics: false });
    const job = info("job-a", "chat");
    metrics.jobStarted(job);
    expect(metrics.snapshot().jobs).toMatchObject({ started: 1, running: 1, by_outcome: { reply: 0 } });
    metrics.jobEvent(job, outcomeEvent({ kind: "reply", text: "hi", warnings: [] }));
    // The client has its reply; the LLM may still be reloading: still running.
    expect(metrics.snapshot().jobs).toMatchObject({ started: 1, running: 1, by_outcome: { reply: 1 } });
    metrics.jobFinished(job, result({ kind: "reply", text: "hi", warnings: [] }), 10);
    expect(metrics.snapshot().jobs).toMatchObject({ started: 1, running: 0, by_outcome: { reply: 1 } });
  });

  it("swaps, unload/reload times and failures follow the GPU scheduler exactly", async () => {
    const gpu = new FakeScheduler();
    const metrics = new ServiceMetrics({ scheduler: gpu, processMetrics: false });
    gpu.unloads.push(400);
    gpu.reloads.push(3000);
    let families = await scrape(metrics);
    expect(sampleValue(families, "diffugen_gpu_swaps_total")).toBe(1);
    expect(sampleValue(families, "diffugen_llm_unload_duration_seconds_count")).toBe(1);
    expect(sampleValue(families, "diffugen_llm_unload_duration_seconds_sum")).toBeCloseTo(0.4);
    expect(sampleValue(families, "diffugen_llm_unload_duration_seconds_bucket", { le: "0.25" })).toBe(0);
    expect(sampleValue(families, "diffugen_llm_unload_duration_seconds_bucket", { le: "0.5" })).toBe(1);
    expect(sampleValue(families, "diffugen_llm_reload_duration_seconds_bucket", { le: "5" })).toBe(1);

    // Three swaps between two scrapes (nobody looked): count and sum stay exact.
    gpu.unloads.push(100, 200, 900);
    gpu.failures.reloads = 2;
    families = await scrape(metrics);
    expect(sampleValue(families, "diffugen_gpu_swaps_total")).toBe(4);
    expect(sampleValue(families, "diffugen_llm_unload_duration_seconds_count")).toBe(4);
    expect(sampleValue(families, "diffugen_llm_unload_duration_seconds_sum")).toBeCloseTo(1.6);
    expect(sampleValue(families, "diffugen_llm_reload_failures_total")).toBe(2);
    expect(sampleValue(families, "diffugen_llm_unload_failures_total")).toBe(0);

    // Scraping again without news changes nothing.
    families = await scrape(metrics);
    expect(sampleValue(families, "diffugen_gpu_swaps_total")).toBe(4);

    expect(metrics.snapshot().gpu).toEqual({
      holder: "idle",
      llm: "resident",
      swaps: 4,
      unload: { count: 4, mean_ms: 400 },
      reload: { count: 1, mean_ms: 3000 },
      unload_failures: 0,
      reload_failures: 2,
    });
  });

  it("the queue and the GPU holder are read at scrape time", async () => {
    const gpu = new FakeScheduler();
    const metrics = new ServiceMetrics({ scheduler: gpu, processMetrics: false });
    gpu.gpu = { kind: "diffusion", jobId: "job-a", since: 0 };
    gpu.llm = "unloaded";
    gpu.queue = [{ jobId: "job-b", phase: "diffusion", position: 1, waitingMs: 1200 }];
    const families = await scrape(metrics);
    expect(sampleValue(families, "diffugen_gpu_queue_length")).toBe(1);
    expect(sampleValue(families, "diffugen_gpu_holder", { holder: "diffusion" })).toBe(1);
    expect(sampleValue(families, "diffugen_gpu_holder", { holder: "idle" })).toBe(0);
    expect(sampleValue(families, "diffugen_llm_state", { state: "unloaded" })).toBe(1);
    expect(metrics.snapshot().queue).toEqual({ length: 1, jobs: [{ job_id: "job-b", phase: "diffusion", position: 1, waiting_ms: 1200 }] });
  });

  it("two instances keep separate registries (two apps in one process do not collide)", async () => {
    const a = new ServiceMetrics({ scheduler: new FakeScheduler() });
    const b = new ServiceMetrics({ scheduler: new FakeScheduler() });
    a.requestFinished({ method: "GET", route: "/health", status: 200, durationSeconds: 0.01 });
    expect(sampleValue(await scrape(a), "diffugen_http_requests_total", { route: "/health" })).toBe(1);
    const familiesB = await scrape(b);
    expect(samplesOf(familiesB, "diffugen_http_requests_total")).toEqual([]);
    // prom-client's process metrics, on each registry.
    expect(familiesB.get("process_cpu_user_seconds_total")?.type).toBe("counter");
  });
});

describe("DurationFollower", () => {
  it("yields each new measurement once; several at a time keep their total", () => {
    const follower = new DurationFollower();
    expect(follower.newSamples({ count: 0, meanMs: 0, lastMs: undefined, maxMs: 0 })).toEqual([]);
    expect(follower.newSamples({ count: 1, meanMs: 500, lastMs: 500, maxMs: 500 })).toEqual([500]);
    expect(follower.newSamples({ count: 1, meanMs: 500, lastMs: 500, maxMs: 500 })).toEqual([]);
    const three = follower.newSamples({ count: 4, meanMs: 400, lastMs: 700, maxMs: 700 });
    expect(three).toHaveLength(3);
    expect(three.at(-1)).toBe(700);
    expect(three.reduce((a, b) => a + b, 0)).toBeCloseTo(1100);
  });
});

describe("parsePrometheusText (the test's own strict reader)", () => {
  const good = [
    "# HELP x_total A counter",
    "# TYPE x_total counter",
    'x_total{a="1",b="q\\"uote"} 3',
    "# HELP h A histogram",
    "# TYPE h histogram",
    'h_bucket{le="0.5"} 1',
    'h_bucket{le="+Inf"} 2',
    "h_sum 1.5",
    "h_count 2",
    "",
  ].join("\n");

  it("reads well-formed text", () => {
    const families = parsePrometheusText(good);
    expect(sampleValue(families, "x_total", { b: 'q"uote' })).toBe(3);
    expect(families.get("h")?.type).toBe("histogram");
  });

  it.each([
    ["a sample without TYPE", "y 1\n"],
    ["a bad label", good.replace('a="1"', "a=1")],
    ["no final newline", good.trimEnd()],
    ["buckets that shrink", good.replace('h_bucket{le="+Inf"} 2', 'h_bucket{le="+Inf"} 0')],
    ["+Inf bucket different from the count", good.replace("h_count 2", "h_count 3")],
    ["a value that is not a number", good.replace("x_total{a=\"1\",b=\"q\\\"uote\"} 3", 'x_total{a="1"} three')],
    ["samples of a family apart", good + 'x_total{a="2"} 1\n'],
  ])("rejects %s", (_, text) => {
    expect(() => parsePrometheusText(text)).toThrow();
  });
});
