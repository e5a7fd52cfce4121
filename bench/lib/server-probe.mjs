// @ts-check
/**
 * Loaded into a DiffuGen server started by a bench (`node --import server-probe.mjs
 * bin/diffugen.js serve`, lib/server-process.ts): notes when the server did what, on the
 * clock every process shares (performance.timeOrigin + now, ms), so the bench can split a
 * request's time without any code of the product knowing about it. It wraps, in the
 * compiled app under DIFFUGEN_BENCH_APP_ROOT (the same module instances the server loads):
 *
 *   JobRunner.prepare / start      admission, and the job's start (its SQLite row, the run)
 *   JobStore.create / appendEvent / finish   every SQLite write
 *   JobJournal.end                 the job's answer known (per job id)
 *   child_process.spawn            the sd-cli double: spawn() called and returned (fork and
 *                                  exec happen inside it), first stdout byte, 'exit' event
 *   fetch to OLLAMA_BASE_URL       only with DIFFUGEN_BENCH_FETCH=1 (it costs time itself):
 *                                  our side of each Ollama exchange, call → end of body
 *
 * DIFFUGEN_BENCH_POLL=old restores the /api/ps poll from before issue 14 (50 ms doubling
 * to 100 ms from the unload call on), by changing the defaults OllamaResidency reads.
 *
 * The bench asks for the notes over the IPC channel: {type: "marks"} → {type: "marks", marks}.
 */
import childProcess from "node:child_process";
import { syncBuiltinESMExports } from "node:module";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { timeFetches } from "./fetch-timing.mjs";

const now = () => performance.timeOrigin + performance.now();
const root = process.env.DIFFUGEN_BENCH_APP_ROOT;
if (!root) throw new Error("server-probe: DIFFUGEN_BENCH_APP_ROOT is not set");
const appModule = (/** @type {string} */ file) => import(pathToFileURL(path.join(root, "dist", file)).href);

/** @typedef {{start: number, end: number}} Interval */
const marks = {
  /** @type {Interval[]} */ admissions: [],
  /** @type {(Interval & {jobId: string | undefined})[]} */ starts: [],
  /** @type {Interval[]} */ sqlite: [],
  /** @type {{jobId: string, at: number}[]} */ outcomes: [],
  /** @type {{pid: number | undefined, calledAt: number, returnedAt: number, firstStdoutAt?: number, exitAt?: number}[]} */ spawns: [],
  /** @type {Interval[]} */ fetches: [],
};

/**
 * @param {any} proto
 * @param {string} name
 * @param {(start: number, end: number, result: any, self: any) => void} note
 */
function timeMethod(proto, name, note) {
  const original = proto[name];
  proto[name] = function (/** @type {unknown[]} */ ...args) {
    const start = now();
    const result = original.apply(this, args);
    note(start, now(), result, this);
    return result;
  };
}

const { JobRunner } = await appModule("src/jobs/job-runner.js");
const { JobStore } = await appModule("src/jobs/job-store.js");
const { JobJournal } = await appModule("src/jobs/job-journal.js");
timeMethod(JobRunner.prototype, "prepare", (start, end) => marks.admissions.push({ start, end }));
timeMethod(JobRunner.prototype, "start", (start, end, job) => marks.starts.push({ start, end, jobId: job?.id }));
for (const name of ["create", "appendEvent", "finish"]) timeMethod(JobStore.prototype, name, (start, end) => marks.sqlite.push({ start, end }));
timeMethod(JobJournal.prototype, "end", (start, _end, _result, journal) => marks.outcomes.push({ jobId: journal.jobId, at: start }));

if (process.env.DIFFUGEN_BENCH_POLL === "old") {
  try {
    const { defaultUnloadPoll } = await appModule("src/llm/unload-poll.js");
    Object.assign(defaultUnloadPoll, { fastForMs: 0, initialMs: 50, maxMs: 100 });
  } catch {
    // An app from before issue 14: it polls the old way anyway.
  }
}

const sdBin = path.basename(process.env.SD_CPP_BIN ?? "sd-cli");
const spawn = childProcess.spawn;
childProcess.spawn = /** @type {typeof spawn} */ (
  function (/** @type {any[]} */ ...args) {
    const calledAt = now();
    const child = /** @type {childProcess.ChildProcess} */ (/** @type {any} */ (spawn).apply(this, args));
    if (typeof args[0] === "string" && path.basename(args[0]) === sdBin) {
      /** @type {(typeof marks.spawns)[number]} */
      const run = { pid: child.pid, calledAt, returnedAt: now() };
      marks.spawns.push(run);
      // `once`: the runner's own listeners see every chunk; this only notes the first one's time.
      child.stdout?.once("data", () => (run.firstStdoutAt = now()));
      child.once("exit", () => (run.exitAt = now()));
    }
    return child;
  }
);
// execa imports { spawn } from node:child_process: update the ESM binding too.
syncBuiltinESMExports();

const ollamaUrl = process.env.OLLAMA_BASE_URL;
if (process.env.DIFFUGEN_BENCH_FETCH === "1" && ollamaUrl) timeFetches(ollamaUrl, now, (start, end) => marks.fetches.push({ start, end }));

process.on("message", (/** @type {any} */ message) => {
  if (message?.type !== "marks") return;
  const taken = Object.fromEntries(Object.entries(marks).map(([key, list]) => [key, list.splice(0)]));
  // A spawn still running is still being noted: it is handed over once it has exited.
  const running = taken.spawns.filter((/** @type {any} */ s) => s.exitAt === undefined);
  taken.spawns = taken.spawns.filter((/** @type {any} */ s) => s.exitAt !== undefined);
  marks.spawns.push(...running);
  // The monotonic clock (µs, a CPU profile's) at this process's timeOrigin: maps marks onto a --cpu-prof.
  const monoAtOrigin = Number(process.hrtime.bigint() / 1000n) - performance.now() * 1000;
  process.send?.({ type: "marks", marks: { ...taken, clock: { timeOrigin: performance.timeOrigin, monoAtOrigin } } });
});
