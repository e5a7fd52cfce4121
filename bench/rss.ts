/**
 * Memory of the server process: `diffugen serve` in its own process as `npm start` runs it
 * (lib/server-process.ts: the compiled app, PORT=0), pointed at the fake Ollama (in this
 * process) and the sd-cli double through its environment. Its resident set (VmRSS in
 * /proc/<pid>/status) is read:
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
 *   npx tsx bench/rss.ts                  (BENCH_STREAMS=n instead of 100)
 */
import { setMaxListeners } from "node:events";
import { fourStep } from "./lib/sd-timing.js";
import { startServerProcess, vmRssKiB } from "./lib/server-process.js";
import { LLM_MODEL } from "./lib/server-stack.js";
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

export async function run(): Promise<RssResult> {
  const streams = Math.max(1, Number(process.env.BENCH_STREAMS ?? 100) || 100);
  // Memory does not depend on Ollama's pace: it answers at once, so 100 refinements are quick.
  const server = await startServerProcess({
    probe: false,
    ollama: {},
    sdEnv: fourStep.env,
    // All the streams come from this one address: no per-client cap (issue 16's default is 8).
    env: { MAX_QUEUE: "128", MAX_STREAMS_PER_CLIENT: "0" },
  });
  const clients = new AbortController();
  setMaxListeners(streams + 10, clients.signal);
  const t0 = Date.now();
  const phase = (what: string) => process.env.BENCH_TRACE && process.stderr.write(`rss: ${what} at ${Date.now() - t0} ms\n`);
  try {
    const { pid, url, ollama } = server;
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
    if (!openInTime) throw new Error(`only ${opened} of ${streams} streams got an event within 60 s\n${server.stderr()}`);
    await sleep(500);
    const streamsKiB = await settledRssKiB(pid);
    const openAtReading = streams - ended;
    phase("streams read");

    clients.abort();
    await Promise.all(pending);
    phase("clients gone");
    return {
      entry: "node bin/diffugen.js serve (compiled)",
      streams,
      startedMiB: round(startedKiB / 1024, 1),
      idleMiB: round(idleKiB / 1024, 1),
      streamsMiB: round(streamsKiB / 1024, 1),
      perStreamKiB: round((streamsKiB - idleKiB) / streams, 1),
      openAtReading,
      violations: server.violations(),
    };
  } finally {
    clients.abort();
    // SIGTERM, then whatever sd-cli it could not end, by pid.
    await server.close();
    phase("server stopped");
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
