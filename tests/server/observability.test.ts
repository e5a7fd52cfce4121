import type { ImageGenerateParamsNonStreaming } from "openai/resources/images";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger, type Logger } from "../../src/logging/index.js";
import type { ServiceStats } from "../../src/metrics/index.js";
import { parsePrometheusText, sampleValue, samplesOf, type MetricFamily } from "../metrics/prometheus-text.js";
import { postJson, startServerStack, tiny, type ServerStack } from "./harness.js";

let s: ServerStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

type Generate = ImageGenerateParamsNonStreaming & Record<string, unknown>;

/** Log lines, one JSON object each, as pino wrote them. */
function collectingLogger(level: "info" | "warn" = "info"): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level,
    destination: {
      write(chunk: string) {
        // Exactly one JSON object per line, newline-terminated.
        expect(chunk.endsWith("\n")).toBe(true);
        expect(chunk.slice(0, -1)).not.toContain("\n");
        lines.push(JSON.parse(chunk) as Record<string, unknown>);
      },
    },
  });
  return { logger, lines };
}

const quiet = () => createLogger({ level: "silent" });

/** A client of /stats and /metrics that counts its own requests (they count too). */
function observer(stack: ServerStack, headers: Record<string, string> = {}) {
  const calls = { stats: 0, metrics: 0 };
  return {
    calls,
    async stats(): Promise<ServiceStats> {
      calls.stats += 1;
      const res = await fetch(`${stack.url}/stats`, { headers });
      expect(res.status).toBe(200);
      return (await res.json()) as ServiceStats;
    },
    async metrics(): Promise<Map<string, MetricFamily>> {
      calls.metrics += 1;
      const res = await fetch(`${stack.url}/metrics`, { headers });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
      return parsePrometheusText(await res.text());
    },
    /** Waits until every job is over (the LLM reload included), as /stats tells it. */
    async untilIdle(): Promise<ServiceStats> {
      await stack.stack.deps.scheduler.whenSettled();
      for (;;) {
        const stats = await this.stats();
        if (stats.jobs.running === 0) return stats;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    /** Polls /stats until `ready` holds. */
    async until(ready: (stats: ServiceStats) => boolean): Promise<ServiceStats> {
      for (;;) {
        const stats = await this.stats();
        if (ready(stats)) return stats;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}

const http = (families: Map<string, MetricFamily>, method: string, route: string, status: number) =>
  sampleValue(families, "diffugen_http_requests_total", { method, route, status: String(status) });

describe("GET /metrics and GET /stats", () => {
  it("count a real image job and a chat reply: requests, images, one swap, sd.cpp's seconds per step", async () => {
    s = await startServerStack({ server: { logger: quiet() } });
    const o = observer(s);

    const before = await o.metrics();
    expect(sampleValue(before, "diffugen_images_total")).toBe(0);
    expect(sampleValue(before, "diffugen_gpu_swaps_total")).toBe(0);
    expect(sampleValue(before, "diffugen_jobs_started_total", { mode: "image" })).toBe(0);

    const made = await s.client.images.generate({ prompt: "a red fox", ...tiny, response_format: "url" } as Generate);
    const image = await fetch(made.data![0]!.url!);
    expect(image.status).toBe(200);
    const chat = await s.client.chat.completions.create({ model: "diffugen", messages: [{ role: "user", content: "hello there" }] });
    expect(chat.choices[0]!.message.content).toBeTruthy();
    expect((await fetch(`${s.url}/v1/no-such-thing`)).status).toBe(404);
    await o.untilIdle();

    const after = await o.metrics();
    // Requests, labelled by route pattern, never by raw path (the image's file name).
    expect(http(after, "POST", "/v1/images/generations", 200)).toBe(1);
    expect(http(after, "GET", "/images/:name", 200)).toBe(1);
    expect(http(after, "POST", "/v1/chat/completions", 200)).toBe(1);
    expect(http(after, "GET", "/v1/*", 404)).toBe(1);
    expect(http(after, "GET", "/metrics", 200)).toBe(1);
    expect(http(after, "GET", "/stats", 200)).toBe(o.calls.stats);
    const routes = new Set(samplesOf(after, "diffugen_http_requests_total").map((sample) => sample.labels.route));
    expect([...routes].sort()).toEqual(["/images/:name", "/metrics", "/stats", "/v1/*", "/v1/chat/completions", "/v1/images/generations"]);
    expect(sampleValue(after, "diffugen_http_request_duration_seconds_count", { method: "POST", route: "/v1/images/generations", status: "200" })).toBe(1);

    // Jobs, images, the swap (LLM out for sd-cli, then back) and its times.
    expect(sampleValue(after, "diffugen_jobs_started_total", { mode: "image" })).toBe(1);
    expect(sampleValue(after, "diffugen_jobs_started_total", { mode: "chat" })).toBe(1);
    expect(sampleValue(after, "diffugen_jobs_finished_total", { mode: "image", outcome: "images" })).toBe(1);
    expect(sampleValue(after, "diffugen_jobs_finished_total", { mode: "chat", outcome: "reply" })).toBe(1);
    expect(sampleValue(after, "diffugen_jobs_finished_total", { mode: "image", outcome: "failed" })).toBe(0);
    expect(sampleValue(after, "diffugen_jobs_running")).toBe(0);
    expect(sampleValue(after, "diffugen_images_total")).toBe(1);
    expect(sampleValue(after, "diffugen_gpu_swaps_total")).toBe(1);
    expect(sampleValue(after, "diffugen_llm_unload_duration_seconds_count")).toBe(1);
    expect(sampleValue(after, "diffugen_llm_reload_duration_seconds_count")).toBe(1);
    expect(sampleValue(after, "diffugen_llm_unload_failures_total")).toBe(0);
    // Three sampling steps, timed by sd-cli itself, for the model that drew; the first one's
    // time includes the lazy UNet load, which is no step rate.
    expect(sampleValue(after, "diffugen_sampling_step_seconds_count", { model: "sd15" })).toBe(2);
    const stepSum = sampleValue(after, "diffugen_sampling_step_seconds_sum", { model: "sd15" });
    expect(stepSum).toBeGreaterThan(0);
    expect(sampleValue(after, "diffugen_gpu_queue_length")).toBe(0);
    expect(sampleValue(after, "diffugen_gpu_holder", { holder: "idle" })).toBe(1);
    expect(sampleValue(after, "diffugen_llm_state", { state: "resident" })).toBe(1);
    // prom-client's process metrics come along.
    expect(after.get("process_resident_memory_bytes")?.type).toBe("gauge");

    const stats = await o.stats();
    // Every request so far except this one: 2 scrapes, the image, its file, the chat, the 404, the /stats polls.
    const total = 6 + (o.calls.stats - 1);
    expect(stats).toEqual({
      uptime_seconds: expect.any(Number),
      requests: { total, by_status: { "2xx": total - 1, "4xx": 1, "5xx": 0 } },
      jobs: { started: 2, running: 0, by_outcome: { images: 1, reply: 1, failed: 0, cancelled: 0 } },
      images: 1,
      failures: 0,
      gpu: {
        holder: "idle",
        llm: "resident",
        swaps: 1,
        unload: { count: 1, mean_ms: expect.any(Number) },
        reload: { count: 1, mean_ms: expect.any(Number) },
        unload_failures: 0,
        reload_failures: 0,
      },
      queue: { length: 0, jobs: [] },
      // Step 1 includes the lazy UNet load: 2 of the 3 steps are step rates.
      seconds_per_step: { sd15: { mean: expect.any(Number), samples: 2 } },
      // No sd-server beside the sd-cli double: the image ran on sd-cli, which loaded the model once.
      diffusion: {
        model_loads: { cli: 1, server: 0 },
        jobs: { cli: 1, server: 0 },
        sd_server: { starts: 0, stops: { burst_end: 0, model_change: 0, cli_job: 0, cancel: 0, failure: 0, shutdown: 0 } },
        first_step: { cli: { count: 1, mean_ms: expect.any(Number), last_ms: expect.any(Number) }, server: { count: 0, mean_ms: 0, last_ms: null } },
      },
      // No memory tool here: no ledger, every drawing swaps.
      vram: { policy: "swap", swaps_avoided: 0, whole_gpu: 0, last_decision: null, card: null },
    });
    expect(sampleValue(after, "diffugen_model_loads_total", { backend: "cli" })).toBe(1);
    expect(sampleValue(after, "diffugen_time_to_first_step_seconds_count", { backend: "cli" })).toBe(1);
    // The same figure both ways.
    expect(stats.seconds_per_step.sd15!.mean).toBeCloseTo(stepSum / 2, 3);
    expect(stats.uptime_seconds).toBeGreaterThanOrEqual(0);
  });

  it("show the GPU queue while a second image job waits, and count one swap for the batch", async () => {
    s = await startServerStack({ server: { logger: quiet() }, sdEnv: { FAKE_SD_STEP_MS: "100" } });
    const o = observer(s);
    const body = { prompt: "a fox", size: "64x64", steps: 8, refine: false } as Generate;
    const first = s.client.images.generate(body);
    const second = s.client.images.generate(body);

    const waiting = await o.until((stats) => stats.gpu.holder === "diffusion" && stats.queue.length === 1);
    expect(waiting.queue.jobs).toEqual([{ job_id: expect.stringMatching(/^job-/), phase: "diffusion", position: 1, waiting_ms: expect.any(Number) }]);
    expect(waiting.jobs).toMatchObject({ started: 2, running: 2 });
    expect(waiting.gpu.llm).toBe("unloaded");
    const during = await o.metrics();
    expect(sampleValue(during, "diffugen_gpu_queue_length")).toBe(1);
    expect(sampleValue(during, "diffugen_gpu_holder", { holder: "diffusion" })).toBe(1);
    expect(sampleValue(during, "diffugen_gpu_holder", { holder: "idle" })).toBe(0);
    expect(sampleValue(during, "diffugen_llm_state", { state: "unloaded" })).toBe(1);

    await Promise.all([first, second]);
    const stats = await o.untilIdle();
    // The two ran back to back: the LLM went out once and came back once.
    expect(stats).toMatchObject({ images: 2, queue: { length: 0, jobs: [] }, gpu: { swaps: 1, reload: { count: 1 } } });
    // Each job's first step includes its lazy UNet load: not a step rate, not sampled.
    expect(stats.seconds_per_step).toEqual({ sd15: { mean: expect.any(Number), samples: 14 } });
    expect(sampleValue(await o.metrics(), "diffugen_gpu_swaps_total")).toBe(1);
  });

  it("count a job whose sd-cli crashed as a failure, and log it as a warning", async () => {
    const { logger, lines } = collectingLogger("warn");
    s = await startServerStack({ server: { logger }, sdEnv: { FAKE_SD_CRASH_AT_STEP: "2", FAKE_SD_CRASH_MODE: "exit" } });
    const o = observer(s);
    const res = await postJson(`${s.url}/v1/images/generations`, { prompt: "a fox", ...tiny, refine: false });
    expect(res.status).toBeGreaterThanOrEqual(500);
    const stats = await o.untilIdle();

    expect(stats).toMatchObject({
      failures: 1,
      images: 0,
      jobs: { started: 1, running: 0, by_outcome: { images: 0, failed: 1 } },
      requests: { by_status: { "5xx": 1 } },
      // The LLM did go out for it, and came back.
      gpu: { swaps: 1, reload: { count: 1 }, llm: "resident" },
      // A run that delivered nothing says nothing about the model's speed.
      seconds_per_step: {},
    });
    const families = await o.metrics();
    expect(sampleValue(families, "diffugen_jobs_finished_total", { mode: "image", outcome: "failed" })).toBe(1);
    expect(http(families, "POST", "/v1/images/generations", res.status)).toBe(1);
    expect(samplesOf(families, "diffugen_sampling_step_seconds_count")).toEqual([]);

    // LOG_LEVEL=warn: no info lines (job started, requests), the failure and the 5xx are there.
    expect(lines.every((line) => line.level === "warn" || line.level === "error")).toBe(true);
    const finished = lines.filter((line) => line.event === "job_finished");
    expect(finished).toEqual([
      expect.objectContaining({ level: "warn", outcome: "failed", job_id: expect.stringMatching(/^job-/), error: expect.objectContaining({ code: "sd_failed" }) }),
    ]);
    expect(lines).toContainEqual(expect.objectContaining({ event: "http_request", route: "/v1/images/generations", status: res.status }));
  });

  it("need the API key when one is set (only /health stays open)", async () => {
    s = await startServerStack({ server: { apiKey: "sekret", logger: quiet() } });
    for (const path of ["/stats", "/metrics"]) {
      const refused = await fetch(`${s.url}${path}`);
      expect(refused.status).toBe(401);
      expect((await fetch(`${s.url}${path}`, { headers: { Authorization: "Bearer wrong" } })).status).toBe(401);
    }
    expect((await fetch(`${s.url}/health`)).status).toBe(200);

    const o = observer(s, { Authorization: "Bearer sekret" });
    const stats = await o.stats();
    expect(stats.requests).toEqual({ total: 5, by_status: { "2xx": 1, "4xx": 4, "5xx": 0 } });
    const families = await observer(s, { "X-API-Key": "sekret" }).metrics();
    expect(http(families, "GET", "/stats", 401)).toBe(2);
    expect(http(families, "GET", "/metrics", 401)).toBe(2);
  });
});

describe("structured logs", () => {
  it("one JSON line when a job starts and one when it finishes, with its job id", async () => {
    const { logger, lines } = collectingLogger("info");
    s = await startServerStack({ server: { logger } });
    await s.client.images.generate({ prompt: "a red fox", ...tiny, refine: false } as Generate);
    await observer(s).untilIdle();

    const started = lines.filter((line) => line.event === "job_started");
    const finished = lines.filter((line) => line.event === "job_finished");
    expect(started).toEqual([
      expect.objectContaining({ level: "info", service: "diffugen", component: "jobs", job_id: expect.stringMatching(/^job-[0-9a-f-]{36}$/), mode: "image" }),
    ]);
    expect(finished).toEqual([
      expect.objectContaining({
        level: "info",
        job_id: started[0]!.job_id,
        outcome: "images",
        model: "sd15",
        images: 1,
        width: 64,
        height: 64,
        steps: 3,
        duration_ms: expect.any(Number),
        timings_ms: expect.objectContaining({ diffuse: expect.any(Number) }),
      }),
    ]);
    expect(new Date(String(finished[0]!.time)).toISOString()).toBe(finished[0]!.time);
    // Requests: the generation at info; the /stats polls are for machines (debug).
    expect(lines).toContainEqual(
      expect.objectContaining({ event: "http_request", method: "POST", route: "/v1/images/generations", status: 200, duration_ms: expect.any(Number) }),
    );
    expect(lines.some((line) => line.event === "http_request" && line.route === "/stats")).toBe(false);
    // Prompts are the users' own: not at info.
    expect(JSON.stringify(lines)).not.toContain("a red fox");
  });
});
