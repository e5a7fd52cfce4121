/**
 * Memory of the server process: `diffugen serve` in its own process (node --import tsx
 * src/cli/main.ts serve, PORT=0), pointed at the fake Ollama (in this process) and the
 * sd-cli double through its environment, exactly as a user would start it. Its resident
 * set (VmRSS in /proc/<pid>/status) is read:
 *
 *   started     once it printed its URL
 *   idle        after warm-up (image requests, streaming and not, a chat) with the LLM
 *               back, nothing running
 *   100 streams while 100 clients hold `POST /v1/images/generations` event streams open
 *               (MAX_QUEUE=128; 50 steps of 274 ms each, so the first image is still
 *               sampling and the other 99 jobs are queued behind it)
 *
 * and "per stream" is (100 streams - idle) / 100. The clients then hang up (cancelling
 * every job), the server gets SIGTERM, and every process started here (the server, any
 * sd-cli double it spawned) is ended by pid.
 *
 * tsx transpiles in the server process, which costs some memory a built `npm start` would
 * not have; it is the same for every reading, so the per-stream figure is unaffected.
 *
 *   npx tsx bench/rss.ts                  (BENCH_STREAMS=n instead of 100)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { setMaxListeners } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { isAlive, readSpawns, readViolations } from "../tests/fakes/fake-gpu.mjs";
import { startFakeOllama } from "../tests/fakes/ollama-server.js";
import { fourStep } from "./lib/sd-timing.js";
import { LLM_MODEL, repoRoot, SD15_FILE, sdCliDouble } from "./lib/server-stack.js";
import { streamPost } from "./lib/sse-client.js";
import { runWhenMain, median, printRows, round } from "./lib/stats.js";

const STREAM_STEPS = 50;

export interface RssResult {
  entry: string;
  streams: number;
  startedMiB: number;
  idleMiB: number;
  streamsMiB: number;
  perStreamKiB: number;
  /** Streams still open (no answer yet) when the 100-stream reading was taken. */
  openAtReading: number;
  violations: number;
}

function vmRssKiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}

/** A few readings over `spanMs`, their median: one reading can catch a GC halfway. */
async function settledRssKiB(pid: number, spanMs = 1000, readings = 5): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < readings; i++) {
    values.push(vmRssKiB(pid));
    await sleep(spanMs / readings);
  }
  return median(values);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A deadline for Promise.race that does not keep the bench alive once the race is won. */
function deadline(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** Starts `diffugen serve`; resolves with its URL once it prints it. */
function startServe(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "serve"], { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString("utf8")).slice(-4000)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error("diffugen serve printed no URL within 60 s")), 60_000);
    const fail = (e: Error) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`${e.message}\n${err}`));
    };
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString("utf8");
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1]!, stderr: () => err });
      }
    });
    child.once("exit", (code, signal) => fail(new Error(`diffugen serve exited (${code ?? signal}) before printing its URL`)));
  });
}

async function stopProcess(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  if ((await Promise.race([exited.then(() => "exited"), deadline(graceMs).then(() => "timeout")])) === "timeout") {
    child.kill("SIGKILL");
    await exited;
  }
}

export async function run(): Promise<RssResult> {
  const streams = Math.max(1, Number(process.env.BENCH_STREAMS ?? 100) || 100);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-bench-rss-"));
  const gpuDir = path.join(root, "gpu");
  const modelsDir = path.join(root, "models");
  for (const dir of [gpuDir, modelsDir]) fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(modelsDir, SD15_FILE), "");
  // Memory does not depend on Ollama's pace: answer at once, so 100 refinements are quick.
  const ollama = await startFakeOllama({ installed: [LLM_MODEL], resident: [LLM_MODEL], gpuDir });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: "0",
    HOST: "127.0.0.1",
    DATA_DIR: path.join(root, "data"),
    SD_CPP_BIN: sdCliDouble,
    MODELS_DIR: modelsDir,
    OUTPUT_DIR: path.join(root, "outputs"),
    OLLAMA_BASE_URL: ollama.url,
    LLM_MODEL,
    DEFAULT_IMAGE_MODEL: "sd15",
    MAX_QUEUE: "128",
    // All the streams come from this one address: no per-client cap (issue 16's default is 8).
    MAX_STREAMS_PER_CLIENT: "0",
    LOG_LEVEL: "warn",
    FAKE_GPU_DIR: gpuDir,
    ...fourStep.env,
  };
  for (const name of ["API_KEY", "PUBLIC_BASE_URL", "MODELS_CONFIG", "SD_EXTRA_ARGS", "NODE_OPTIONS"]) delete env[name];

  let serve: Awaited<ReturnType<typeof startServe>> | undefined;
  const clients = new AbortController();
  setMaxListeners(streams + 10, clients.signal);
  const t0 = Date.now();
  const phase = (what: string) => process.env.BENCH_TRACE && process.stderr.write(`rss: ${what} at ${Date.now() - t0} ms\n`);
  try {
    serve = await startServe(env);
    const pid = serve.child.pid!;
    const url = serve.url;
    const startedKiB = vmRssKiB(pid);
    phase("started");
    const llmBack = async () => {
      for (let i = 0; i < 200 && !ollama.listed().includes(LLM_MODEL); i++) await sleep(50);
    };

    // Warm-up: every path the 100 streams take, and the non-streaming one.
    const image = { model: "sd15", prompt: "a lighthouse at dusk", size: "512x512", steps: 2 };
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${url}/v1/images/generations`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(image) });
      if (res.status !== 200) throw new Error(`warm-up image answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
      await res.arrayBuffer();
      await llmBack();
      const streamed = await streamPost(`${url}/v1/images/generations`, { ...image, stream: true });
      if (streamed.status !== 200) throw new Error(`warm-up stream answered ${streamed.status}`);
      await llmBack();
    }
    await sleep(1000);
    const idleKiB = await settledRssKiB(pid);
    phase("idle read");

    // 100 open streams: every one has its first byte before the reading.
    let opened = 0;
    let ended = 0;
    let allOpen!: () => void;
    const allOpenPromise = new Promise<void>((resolve) => (allOpen = resolve));
    const pending = Array.from({ length: streams }, (_, i) =>
      streamPost(
        `${url}/v1/images/generations`,
        { model: "sd15", prompt: `a lighthouse number ${i}`, size: "512x512", steps: STREAM_STEPS, stream: true },
        {
          signal: clients.signal,
          onMessage: () => {
            if (opened < streams && ++opened === streams) allOpen();
          },
        },
      )
        .catch(() => undefined)
        .finally(() => ended++),
    );
    const openInTime = await Promise.race([allOpenPromise.then(() => true), deadline(60_000).then(() => false)]);
    if (!openInTime) throw new Error(`only ${opened} of ${streams} streams got an event within 60 s\n${serve.stderr()}`);
    await sleep(500);
    const streamsKiB = await settledRssKiB(pid);
    const openAtReading = streams - ended;
    phase("streams read");

    clients.abort();
    await Promise.all(pending);
    phase("clients gone");
    await stopProcess(serve.child, 30_000);
    phase("server stopped");
    return {
      entry: "node --import tsx src/cli/main.ts serve",
      streams,
      startedMiB: round(startedKiB / 1024, 1),
      idleMiB: round(idleKiB / 1024, 1),
      streamsMiB: round(streamsKiB / 1024, 1),
      perStreamKiB: round((streamsKiB - idleKiB) / streams, 1),
      openAtReading,
      violations: readViolations(gpuDir).length,
    };
  } finally {
    clients.abort();
    if (serve) await stopProcess(serve.child, 30_000);
    // The server ends its sd-cli children; any it could not are ended here, by pid.
    for (const { pid } of readSpawns(gpuDir)) {
      if (isAlive(pid)) process.kill(pid, "SIGKILL");
    }
    await ollama.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

export function printTable(r: RssResult): void {
  console.log(`server memory (VmRSS of \`${r.entry}\`)`);
  printRows([
    ["started", "idle after warm-up", `${r.streams} open streams`, "per stream"],
    [`${r.startedMiB} MiB`, `${r.idleMiB} MiB`, `${r.streamsMiB} MiB`, `${r.perStreamKiB} KiB`],
  ]);
  console.log(`streams still open at the reading: ${r.openAtReading}/${r.streams}; GPU violations: ${r.violations}`);
}

runWhenMain(import.meta.url, run, printTable);
