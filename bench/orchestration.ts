/**
 * Orchestration cost per image, the way an outside observer measures it (issue 14, item 5):
 *
 *   cost = client wall time − the sd process's own wall time − Ollama's own time
 *
 * The real HTTP server (lib/server-stack.ts: bootstrap + startServer, the product's /api/ps
 * poll and timeouts) in front of the doubles, each of which says itself what it spent:
 *
 *   client    `POST /v1/images/generations`, 64x64, 4 steps, refine on, b64_json, from the
 *             fetch() call to the last byte of the answer; one at a time, each once the
 *             previous run is over (the LLM back), like a user asking again a little later.
 *   sd        the sd-cli double's own life (FAKE_SD_LIFETIME): from its process start
 *             (performance.timeOrigin, before Node boots it) to the moment it exits.
 *   Ollama    the strict Ollama double's own time: each request from its arrival to its
 *             answer sent, and an unload from its arrival until the model has left /api/ps
 *             (the double keeps it listed for its linger, as Ollama's scheduler does).
 *
 * cost = wall − |(sd ∪ Ollama) ∩ [fetch, last byte]|: everything else is ours. It is split
 * into the windows of a request's life, each counting only the time in it that neither
 * double covers, so the windows add up to the cost:
 *
 *   http in          fetch() → admission starts (the client's send, routing, body parsing)
 *   admission        JobRunner.prepare(): validation, model, parameters, queue check
 *   job start        → JobRunner.start() returns (the job's SQLite row, the run set up)
 *   → refine chat    → the refinement chat reaches Ollama (first superstep, LLM lease, request)
 *   refine → unload  refinement answered → the unload reaches Ollama (answer parsed, refine
 *                    and unload nodes, the GPU scheduler, the /api/ps read before the unload)
 *   poll gap         the model gone from /api/ps → the /api/ps poll that sees it gone arrives
 *   confirm → spawn  that poll answered → spawn() called (scheduler grant, supersteps, the
 *                    diffuse node, sd-cli's arguments)
 *   spawn            spawn() called → the sd process has started (fork, exec)
 *   exit             the sd process exits → its 'exit' event here
 *   exit → outcome   → the job's answer is known (output checks, diffuse's end, superstep,
 *                    the job's end in SQLite)
 *   answer           → the client has the last byte (PNG read, base64, JSON, HTTP out)
 *
 * plus "of which SQLite": the job store's writes (wrapped) not hidden behind the doubles.
 *
 * Side by side in one run, the same requests against two poll schedules: `old` (50 ms,
 * doubling to 100 ms, as before issue 14) and `new` (the product's default now: every few ms
 * while an unload is expected, backing off after). The Ollama double lingers
 * LINGER_MS after an unload (lib/ollama-timing.ts: Ollama drops the runner from /api/ps as
 * soon as it has stopped it, a few hundred ms).
 *
 * Also, per request, what bench/overhead.ts would have counted: sd as spawn() → 'exit'
 * event, Ollama as our fetch() → end of body, from this process; the difference shows
 * which time the two measurements see differently.
 *
 *   npx tsx bench/orchestration.ts    (BENCH_N=n measured images per schedule, default 40,
 *                                      12 with BENCH_QUICK=1; BENCH_SCHEDULE=old|new runs one;
 *                                      BENCH_TRACE=1 prints each request's windows,
 *                                      BENCH_TRACE=timeline each request's every known moment)
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { JobStore } from "../src/jobs/job-store.js";
import { JobRunner } from "../src/jobs/index.js";
import { OLD_POLL_SCHEDULE } from "./lib/poll-schedules.js";
import { coveredMs, uncoveredMs, uncoveredPartMs, type Interval } from "./lib/intervals.js";
import { sdCliDouble, startBenchServer, type BenchServer } from "./lib/server-stack.js";
import { watchSpawns, type SpawnWatch } from "./lib/spawn-watch.js";
import { epochNow, percentile, printRows, quick, round, runWhenMain } from "./lib/stats.js";

const API_KEY = "bench-key";
const SIZE = "64x64";
const STEPS = 4;
const TARGET_MEDIAN_MS = 25;
const TARGET_P99_MS = 60;
/** Ollama's time per image: a short refinement answer, the LLM's reload. */
const OLLAMA = { chatDelayMs: 100, loadMs: 100 } as const;
/** How long the strict double keeps an unloaded model in /api/ps (Ollama: a few hundred ms). */
const LINGER_MS = 200;
/** The sd-cli double at about 0.8 s for a 64x64, 4-step image (process start included). */
const SD_ENV = { FAKE_SD_LOAD_MS: "40", FAKE_SD_COND_MS: "100", FAKE_SD_STEP_MS: "120", FAKE_SD_DECODE_MS: "60" } as const;

export const WINDOWS = [
  "http in",
  "admission",
  "job start",
  "→ refine chat",
  "refine → unload",
  "poll gap",
  "confirm → spawn",
  "spawn",
  "exit",
  "exit → outcome",
  "answer",
] as const;
export type WindowName = (typeof WINDOWS)[number];

interface Sample {
  wallMs: number;
  sdMs: number;
  ollamaMs: number;
  costMs: number;
  windows: Record<WindowName, number>;
  sqliteMs: number;
  /** The same request as bench/overhead.ts counts it (sd: spawn() → 'exit'; Ollama: our fetch() → body end). */
  overheadStyleMs: number;
  /** Node booting the double (its process start → its script running): sd's own time here. */
  sdBootMs: number;
}

export interface Spread {
  p50: number;
  p99: number;
  max: number;
}

export interface ScheduleFigures {
  schedule: string;
  poll: { initialMs: number; maxMs: number; fastMs?: number; fastForMs?: number };
  images: number;
  wallMs: Spread;
  sdMs: Spread;
  ollamaMs: Spread;
  costMs: Spread;
  /** Median of each window (medians do not add up; `mean` does). */
  windowsP50: Record<WindowName, number>;
  windowsMean: Record<WindowName, number>;
  sqliteP50: number;
  overheadStyleMs: Spread;
  sdBootMs: Spread;
  /** /api/ps requests per image. */
  pollsPerImage: number;
  meetsTarget: boolean;
}

export interface OrchestrationResult {
  setup: { size: string; steps: number; ollama: typeof OLLAMA; lingerMs: number; sdEnv: typeof SD_ENV; cores: number };
  schedules: ScheduleFigures[];
  targetMedianMs: number;
  targetP99Ms: number;
  violations: number;
}

/** Wraps a class's methods to note when each call ran (synchronous ones: the job store). */
function timeMethods<T extends object>(proto: T, names: (keyof T)[], into: Interval[]): () => void {
  const originals = names.map((name) => [name, proto[name]] as const);
  for (const [name, original] of originals) {
    (proto as Record<keyof T, unknown>)[name] = function (this: unknown, ...args: unknown[]) {
      const start = epochNow();
      try {
        return (original as (...a: unknown[]) => unknown).apply(this, args);
      } finally {
        into.push({ start, end: epochNow() });
      }
    };
  }
  return () => {
    for (const [name, original] of originals) (proto as Record<keyof T, unknown>)[name] = original;
  };
}

/** Our own fetch() calls to the Ollama double: call → end of body (what bench/overhead.ts counts). */
function watchFetch(ollamaUrl: string, into: Interval[]): () => void {
  const original = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    if (!url.startsWith(ollamaUrl)) return original(input, init);
    const start = epochNow();
    let done = false;
    const record = () => {
      if (done) return;
      done = true;
      into.push({ start, end: epochNow() });
    };
    let res: Response;
    try {
      res = await original(input, init);
    } catch (err) {
      record();
      throw err;
    }
    if (!res.body) {
      record();
      return res;
    }
    const body = res.body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({ flush: record }));
    init?.signal?.addEventListener("abort", record, { once: true });
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  return () => {
    globalThis.fetch = original;
  };
}

interface Lifetime {
  pid: number;
  startedAt: number;
  mainAt: number;
  exitedAt: number;
}

function readLifetimes(file: string): Lifetime[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Lifetime);
}

const spreadOf = (values: number[], digits = 1): Spread => ({
  p50: round(percentile(values, 50), digits),
  p99: round(percentile(values, 99), digits),
  max: round(Math.max(...values), digits),
});

async function measureSchedule(name: string, residency: ScheduleFigures["poll"] | undefined, n: number, warmup: number, spawns: SpawnWatch): Promise<{ figures: ScheduleFigures; violations: number }> {
  const lifetimeFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-bench-life-")), "lifetimes.jsonl");
  const bench: BenchServer = await startBenchServer({
    ollama: { strict: true, unloadLingerMs: LINGER_MS, ...OLLAMA },
    sdEnv: { ...SD_ENV, FAKE_SD_LIFETIME: lifetimeFile },
    apiKey: API_KEY,
    residency: residency && { pollInitialMs: residency.initialMs, pollMaxMs: residency.maxMs, pollFastMs: residency.fastMs, pollFastForMs: residency.fastForMs },
  });
  const sqlite: Interval[] = [];
  const admissions: Interval[] = [];
  const starts: Interval[] = [];
  const ourFetches: Interval[] = [];
  const outcomes = new Map<string, number>();
  /** BENCH_TRACE=timeline: every job event as the runner's observers see it. */
  const jobEvents: [number, string][] = [];
  const restoreStore = timeMethods(Object.getPrototypeOf(bench.runner.store) as JobStore, ["create", "appendEvent", "finish"], sqlite);
  const restoreRunner = (() => {
    const a = timeMethods(JobRunner.prototype, ["prepare"], admissions);
    const b = timeMethods(JobRunner.prototype, ["start"], starts);
    return () => (a(), b());
  })();
  // Wrapping fetch costs time itself (a TransformStream per call): only when asked.
  const restoreFetch = process.env.BENCH_TRACE === "timeline" || process.env.BENCH_FETCH ? watchFetch(bench.ollama.url, ourFetches) : () => undefined;
  const stopObserving = bench.runner.observe({
    jobEvent(job, event) {
      if (event.type === "outcome") outcomes.set(job.id, epochNow());
      if (process.env.BENCH_TRACE === "timeline") {
        const what = event.type === "progress" ? `${event.event.kind} ${"phase" in event.event ? event.event.phase : ""}` : event.type === "node" ? `node ${event.node} update` : event.type;
        jobEvents.push([epochNow(), `    job event: ${what}`]);
      }
    },
  });
  const headers = { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" };
  const body = JSON.stringify({ model: "sd15", prompt: "a lighthouse at dusk", size: SIZE, steps: STEPS, response_format: "b64_json" });

  const imageRequest = async (): Promise<Sample> => {
    await bench.settle();
    const requestsBefore = bench.ollama.requests.length;
    const start = epochNow();
    const res = await fetch(`${bench.url}/v1/images/generations`, { method: "POST", headers, body });
    const text = await res.text();
    const end = epochNow();
    if (res.status !== 200) throw new Error(`image request failed: ${res.status} ${text.slice(0, 300)}`);
    const jobId = res.headers.get("x-diffugen-job-id") ?? "";
    // The reload the request set off may still be running: its load counts once it is over.
    await bench.settle();

    const requests = bench.ollama.requests.slice(requestsBefore);
    const ollama: Interval[] = requests.map((r) => ({ start: r.receivedAt, end: (r.kind === "unload" ? r.goneAt : r.finishedAt) ?? end }));
    const life = readLifetimes(lifetimeFile).filter((l) => l.exitedAt > start && l.startedAt < end);
    const sd: Interval[] = life.map((l) => ({ start: l.startedAt, end: l.exitedAt }));
    const external = [...sd, ...ollama];
    const wallMs = end - start;
    const costMs = wallMs - coveredMs(external, start, end);

    // The markers of the request's life, in order (see the header).
    const admission = admissions.find((i) => i.start >= start && i.start < end);
    const jobStart = starts.find((i) => i.start >= start && i.start < end);
    const chat = requests.find((r) => r.kind === "chat");
    const unload = requests.find((r) => r.kind === "unload");
    const goneAt = unload?.goneAt;
    const seen = goneAt === undefined ? undefined : requests.find((r) => r.kind === "ps" && r.receivedAt >= goneAt);
    const run = spawns.runs.find((r) => r.calledAt >= start && r.calledAt < end);
    const lifetime = life[0];
    const outcomeAt = outcomes.get(jobId) ?? end;
    const marks: [WindowName, number | undefined][] = [
      ["http in", admission?.start],
      ["admission", admission?.end],
      ["job start", jobStart?.end],
      ["→ refine chat", chat?.receivedAt],
      ["refine → unload", goneAt],
      ["poll gap", seen?.receivedAt],
      ["confirm → spawn", run?.calledAt],
      ["spawn", lifetime?.startedAt],
      ["exit", run?.exitAt],
      ["exit → outcome", outcomeAt],
      ["answer", end],
    ];
    const windows = {} as Record<WindowName, number>;
    let from = start;
    for (const [window, at] of marks) {
      const to = at === undefined ? from : Math.min(end, Math.max(from, at));
      windows[window] = uncoveredMs(external, from, to);
      from = to;
    }
    if (process.env.BENCH_WINDOWS_FILE) {
      // For a CPU profile (node --cpu-prof): each window on the monotonic clock, in µs.
      const toMono = (epoch: number) => Number(process.hrtime.bigint() / 1000n) - (epochNow() - epoch) * 1000;
      let f = start;
      const spans = marks.map(([w, at]) => {
        const t = at === undefined ? f : Math.min(end, Math.max(f, at));
        const span = { window: w, from: toMono(f), to: toMono(t) };
        f = t;
        return span;
      });
      const ext = external.map((i) => ({ from: toMono(i.start), to: toMono(i.end) }));
      fs.appendFileSync(process.env.BENCH_WINDOWS_FILE, JSON.stringify({ spans, ext }) + "\n");
    }
    // The part of "exit" before the double's own exit belongs to sd: the marker is its exit.
    if (lifetime && run?.exitAt !== undefined) windows.exit = uncoveredMs(external, lifetime.exitedAt, run.exitAt);
    if (process.env.BENCH_TRACE === "timeline") {
      // Every moment this bench knows of, from the fetch() call on: where the gaps are.
      const at: [number, string][] = [
        [start, "client fetch()"],
        ...(admission ? ([[admission.start, "admission start"], [admission.end, "admission end"]] as [number, string][]) : []),
        ...(jobStart ? ([[jobStart.end, "job started"]] as [number, string][]) : []),
        ...requests.flatMap((r): [number, string][] => [
          [r.receivedAt, `ollama ${r.kind} received`],
          ...(r.finishedAt ? ([[r.finishedAt, `ollama ${r.kind} answered`]] as [number, string][]) : []),
          ...(r.goneAt ? ([[r.goneAt, "ollama model gone"]] as [number, string][]) : []),
        ]),
        ...ourFetches.filter((f) => f.start >= start && f.start < end).flatMap((f): [number, string][] => [[f.start, "  our fetch start"], [f.end, "  our fetch end"]]),
        ...bench.log.filter((l) => l.at >= start && l.at <= end).map((l): [number, string] => [l.at, `scheduler: ${l.message}`]),
        ...(run ? ([[run.calledAt, "spawn() called"], [run.returnedAt, "spawn() returned"], [run.firstStdoutAt ?? NaN, "first stdout byte"], [run.exitAt ?? NaN, "'exit' event"]] as [number, string][]) : []),
        ...(lifetime ? ([[lifetime.startedAt, "sd process start"], [lifetime.mainAt, "sd script runs"], [lifetime.exitedAt, "sd process exits"]] as [number, string][]) : []),
        ...sqlite.filter((i) => i.start >= start && i.start < end).map((i): [number, string] => [i.start, `  sqlite ${round(i.end - i.start, 2)} ms`]),
        ...jobEvents.filter(([t]) => t >= start && t <= end),
        [outcomeAt, "outcome known"],
        [end, "client has the last byte"],
      ];
      for (const [t, what] of at.sort((x, y) => x[0] - y[0])) console.log(`${(t - start).toFixed(1).padStart(8)}  ${what}`);
      console.log(`cost ${round(costMs)} ms\n`);
    } else if (process.env.BENCH_TRACE) {
      console.log(`${name} wall ${round(wallMs)} cost ${round(costMs)} | ${WINDOWS.map((w) => `${w} ${round(windows[w])}`).join(" | ")}`);
    }

    const spawnCalls = spawns.runs.filter((r) => r.calledAt >= start && r.calledAt < end && r.exitAt !== undefined);
    const overheadStyle = [...spawnCalls.map((r) => ({ start: r.calledAt, end: r.exitAt! })), ...ourFetches];
    return {
      wallMs,
      sdMs: coveredMs(sd, start, end),
      ollamaMs: coveredMs(ollama, start, end),
      costMs,
      windows,
      sqliteMs: uncoveredPartMs(sqlite, external, start, end),
      overheadStyleMs: wallMs - coveredMs(overheadStyle, start, end),
      sdBootMs: lifetime ? lifetime.mainAt - lifetime.startedAt : Number.NaN,
    };
  };

  try {
    for (let i = 0; i < warmup; i++) await imageRequest();
    const pollsBefore = bench.ollama.stats.ps;
    const samples: Sample[] = [];
    for (let i = 0; i < n; i++) samples.push(await imageRequest());
    const polls = bench.ollama.stats.ps - pollsBefore;
    const col = (f: (s: Sample) => number) => samples.map(f);
    const costs = col((s) => s.costMs);
    const figures: ScheduleFigures = {
      schedule: name,
      poll: residency ?? { initialMs: Number.NaN, maxMs: Number.NaN },
      images: n,
      wallMs: spreadOf(col((s) => s.wallMs)),
      sdMs: spreadOf(col((s) => s.sdMs)),
      ollamaMs: spreadOf(col((s) => s.ollamaMs)),
      costMs: spreadOf(costs),
      windowsP50: Object.fromEntries(WINDOWS.map((w) => [w, round(percentile(col((s) => s.windows[w]), 50), 2)])) as Record<WindowName, number>,
      windowsMean: Object.fromEntries(WINDOWS.map((w) => [w, round(col((s) => s.windows[w]).reduce((a, b) => a + b, 0) / n, 2)])) as Record<WindowName, number>,
      sqliteP50: round(percentile(col((s) => s.sqliteMs), 50), 2),
      overheadStyleMs: spreadOf(col((s) => s.overheadStyleMs)),
      sdBootMs: spreadOf(col((s) => s.sdBootMs)),
      pollsPerImage: round(polls / n, 1),
      meetsTarget: percentile(costs, 50) < TARGET_MEDIAN_MS && percentile(costs, 99) < TARGET_P99_MS,
    };
    process.stderr.write(`rss ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB, external ${Math.round(process.memoryUsage().external / 2 ** 20)} MiB, heap ${Math.round(process.memoryUsage().heapUsed / 2 ** 20)} MiB\n`);
    return { figures, violations: bench.violations() };
  } finally {
    stopObserving();
    restoreFetch();
    restoreRunner();
    restoreStore();
    await bench.close();
    fs.rmSync(path.dirname(lifetimeFile), { recursive: true, force: true });
  }
}

export async function run(): Promise<OrchestrationResult> {
  const n = Math.max(1, Number(process.env.BENCH_N ?? (quick ? 12 : 40)) || 40);
  const warmup = quick ? 2 : 3;
  const spawns = watchSpawns(sdCliDouble);
  try {
    const schedules: ScheduleFigures[] = [];
    let violations = 0;
    const only = process.env.BENCH_SCHEDULE;
    for (const [name, poll] of [
      ["old", OLD_POLL_SCHEDULE],
      ["new", undefined],
    ] as const) {
      if (only && only !== name) continue;
      const { figures, violations: v } = await measureSchedule(name, poll, n, warmup, spawns);
      schedules.push(figures);
      violations += v;
    }
    return {
      setup: { size: SIZE, steps: STEPS, ollama: OLLAMA, lingerMs: LINGER_MS, sdEnv: SD_ENV, cores: os.cpus().length },
      schedules,
      targetMedianMs: TARGET_MEDIAN_MS,
      targetP99Ms: TARGET_P99_MS,
      violations,
    };
  } finally {
    spawns.restore();
  }
}

export function printTable(r: OrchestrationResult): void {
  console.log(
    `orchestration cost: POST /v1/images/generations ${r.setup.size}, ${r.setup.steps} steps, refine on; ` +
      `cost = wall − sd's own life − Ollama's own time (strict double, linger ${r.setup.lingerMs} ms); ms`,
  );
  const head = ["", ...r.schedules.map((s) => `${s.schedule} p50`), ...r.schedules.map((s) => `${s.schedule} mean`)];
  const row = (label: string, p50: (s: ScheduleFigures) => number, mean: (s: ScheduleFigures) => number) => [
    label,
    ...r.schedules.map((s) => p50(s).toFixed(1)),
    ...r.schedules.map((s) => mean(s).toFixed(1)),
  ];
  printRows([
    head,
    ...WINDOWS.map((w) => row(w, (s) => s.windowsP50[w], (s) => s.windowsMean[w])),
    row("of which SQLite", (s) => s.sqliteP50, (s) => s.sqliteP50),
  ]);
  printRows([
    ["schedule", "n", "wall p50", "sd p50", "Ollama p50", "cost p50", "p99", "max", "overhead.ts-style p50", "double's boot p50", "polls/image", "target"],
    ...r.schedules.map((s) => [
      s.schedule,
      String(s.images),
      s.wallMs.p50.toFixed(1),
      s.sdMs.p50.toFixed(1),
      s.ollamaMs.p50.toFixed(1),
      s.costMs.p50.toFixed(1),
      s.costMs.p99.toFixed(1),
      s.costMs.max.toFixed(1),
      s.overheadStyleMs.p50.toFixed(1),
      s.sdBootMs.p50.toFixed(1),
      String(s.pollsPerImage),
      s.meetsTarget ? "met" : "NOT met",
    ]),
  ]);
  console.log(`target: cost p50 < ${r.targetMedianMs} ms and p99 < ${r.targetP99Ms} ms; GPU violations: ${r.violations}`);
}

runWhenMain(import.meta.url, run, printTable, (r) => r.violations !== 0);
