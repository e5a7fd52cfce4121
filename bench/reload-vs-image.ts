/**
 * The image must not wait for the LLM's reload. After sd-cli is done the scheduler
 * reloads the LLM (a real Qwen load takes ~1.5 s: the Ollama double's loadMs); the user
 * should have the image while that load runs, not after it.
 *
 * For a non-streaming and a streaming `POST /v1/images/generations` (refine on, 4 steps
 * timed like fixtures/sd-cli/gen-basic), it notes on one clock:
 *
 *   image     the client has the image: the last byte of the JSON answer, or the arrival
 *             of the `image_generation.completed` event (its last chunk)
 *   reloaded  the reload finished: the scheduler's "LLM reloaded" (OllamaControl saw the
 *             load answered and /api/ps list the model), checked against the fake Ollama's
 *             own record of the load request + loadMs
 *
 * and prints both, from the request's start, and the gap (reloaded - image; positive =
 * the image came first, by about the reload time when nothing waits for it).
 *
 *   npx tsx bench/reload-vs-image.ts      (BENCH_QUICK=1: fewer requests)
 */
import { realOllama } from "./lib/ollama-timing.js";
import { fourStep } from "./lib/sd-timing.js";
import { logTimes, startBenchServer, type BenchServer } from "./lib/server-stack.js";
import { streamPost } from "./lib/sse-client.js";
import { epochNow, runWhenMain, median, ms, printRows, quick, round } from "./lib/stats.js";

export interface ReloadSample {
  /** From the request's start (ms). */
  imageMs: number;
  reloadStartedMs: number;
  reloadedMs: number;
  /** reloaded - image: > 0 means the client had the image first. */
  gapMs: number;
}

export interface ReloadVsImageMode {
  mode: "non-streaming" | "streaming";
  requests: number;
  imageMs: number;
  reloadedMs: number;
  gapMs: { p50: number; min: number };
  /** Every request had its image before the reload finished. */
  imageFirst: boolean;
  samples: ReloadSample[];
}

export interface ReloadVsImageResult {
  loadMs: number;
  modes: ReloadVsImageMode[];
  imageFirst: boolean;
  violations: number;
}

const body = { model: "sd15", prompt: "a lighthouse at dusk, waves crashing", size: "512x512", steps: fourStep.steps };

async function sample(bench: BenchServer, streaming: boolean): Promise<ReloadSample> {
  await bench.settle();
  const start = epochNow();
  let imageAt: number;
  if (streaming) {
    const result = await streamPost(`${bench.url}/v1/images/generations`, { ...body, stream: true });
    const completed = result.messages.find((m) => m.event === "image_generation.completed");
    if (result.status !== 200 || !completed) throw new Error(`stream answered ${result.status} without an image`);
    imageAt = completed.at;
  } else {
    const res = await fetch(`${bench.url}/v1/images/generations`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const json = (await res.json()) as { data?: { b64_json?: string }[] };
    imageAt = epochNow();
    if (res.status !== 200 || !json.data?.[0]?.b64_json) throw new Error(`image request answered ${res.status} without an image`);
  }
  await bench.settle();
  const reloadStarted = logTimes(bench.log, "reloading LLM", start)[0];
  const reloaded = logTimes(bench.log, "LLM reloaded", start)[0];
  if (reloadStarted === undefined || reloaded === undefined) throw new Error("the LLM was not reloaded after the image");
  // Cross-check with the double: its load request arrived (Date.now) and took loadMs.
  const load = bench.ollama.requests.find((r) => r.kind === "load" && r.at >= Math.floor(start));
  if (load && Math.abs(load.at + realOllama.loadMs - reloaded) > 250) {
    throw new Error(`the scheduler's reload end (${round(reloaded - start)} ms) and the double's (${round(load.at + realOllama.loadMs - start)} ms) disagree`);
  }
  return { imageMs: imageAt - start, reloadStartedMs: reloadStarted - start, reloadedMs: reloaded - start, gapMs: reloaded - imageAt };
}

export async function run(): Promise<ReloadVsImageResult> {
  const n = quick ? 2 : 4;
  const bench = await startBenchServer({ ollama: { ...realOllama }, sdEnv: fourStep.env });
  try {
    await sample(bench, false); // warm-up
    const modes: ReloadVsImageMode[] = [];
    for (const streaming of [false, true]) {
      const samples: ReloadSample[] = [];
      for (let i = 0; i < n; i++) samples.push(await sample(bench, streaming));
      const gaps = samples.map((s) => s.gapMs);
      modes.push({
        mode: streaming ? "streaming" : "non-streaming",
        requests: n,
        imageMs: round(median(samples.map((s) => s.imageMs))),
        reloadedMs: round(median(samples.map((s) => s.reloadedMs))),
        gapMs: { p50: round(median(gaps)), min: round(Math.min(...gaps)) },
        imageFirst: gaps.every((g) => g > 0),
        samples: samples.map((s) => ({ imageMs: round(s.imageMs), reloadStartedMs: round(s.reloadStartedMs), reloadedMs: round(s.reloadedMs), gapMs: round(s.gapMs) })),
      });
    }
    return { loadMs: realOllama.loadMs, modes, imageFirst: modes.every((m) => m.imageFirst), violations: bench.violations() };
  } finally {
    await bench.close();
  }
}

export function printTable(r: ReloadVsImageResult): void {
  console.log(`image delivered vs LLM reload finished (reload takes ${r.loadMs} ms; times from the request's start, medians)`);
  printRows([
    ["request", "n", "client has image", "reload finished", "gap p50", "gap min", "image first"],
    ...r.modes.map((m) => [m.mode, String(m.requests), ms(m.imageMs), ms(m.reloadedMs), ms(m.gapMs.p50), ms(m.gapMs.min), m.imageFirst ? "yes" : "NO"]),
  ]);
  console.log(`the image ${r.imageFirst ? "never waited" : "WAITED"} for the reload; GPU violations: ${r.violations}`);
}

runWhenMain(import.meta.url, run, printTable, (r) => !r.imageFirst || r.violations !== 0);
