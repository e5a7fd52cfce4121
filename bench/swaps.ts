/**
 * LLM ⇄ diffusion swaps per burst: 1, 4 and 8 clients send `POST /v1/images/generations`
 * (refine on) to the real server at the same moment. Each request refines its prompt with
 * the LLM, then waits for the GPU; the scheduler should unload the LLM once, run every
 * waiting image back to back, and reload the LLM once, however many images the burst has.
 * The doubles are timed like the real thing: sd-cli as fixtures/sd-cli/gen-basic (4 steps,
 * lib/sd-timing.ts), Ollama with a 200 ms unload linger and a 1.5 s reload
 * (lib/ollama-timing.ts).
 *
 * Per burst size it prints the unloads and reloads a burst cost (from the scheduler's
 * statistics, checked against the loads the fake Ollama saw), and the hand-over latency:
 * from the Ollama double actually dropping the LLM from /api/ps (after its linger; seen by
 * watching the simulated GPU file it rewrites) to the scheduler granting the GPU to the
 * first diffusion job (its log line). That gap is OllamaResidency's /api/ps polling: every
 * 3 ms while the drop is expected (src/llm/unload-poll.ts), so a drop is seen up to one
 * pause late, plus one /api/ps round trip.
 *
 *   npx tsx bench/swaps.ts              (BENCH_ROUNDS=n bursts per size, default 3, 1 with BENCH_QUICK=1)
 */
import { imageBurst, type ImageBurst } from "./lib/image-burst.js";
import { realOllama } from "./lib/ollama-timing.js";
import { fourStep, timeScale } from "./lib/sd-timing.js";
import { startBenchServer, type BenchServer } from "./lib/server-stack.js";
import { runWhenMain, ms, percentile, printRows, quick, round } from "./lib/stats.js";

const BURST_SIZES = [1, 4, 8] as const;
const TARGET_P99_MS = 300;

export interface BurstFigures {
  burst: number;
  rounds: number;
  images: number;
  failedRequests: number;
  unloads: number;
  reloads: number;
  unloadsPerBurst: number;
  reloadsPerBurst: number;
  /** LLM loads the fake Ollama performed (should equal reloads). */
  ollamaModelLoads: number;
  /** Ollama double drops the LLM → scheduler grants the GPU, one sample per burst. */
  dropToGrantMs: { p50: number; p99: number; max: number; samples: number[] };
  /** First request sent → every image answered (the LLM's reload may still run). */
  burstWallMs: { p50: number; max: number };
}

export interface SwapsResult {
  setup: { burstSizes: readonly number[]; rounds: number; steps: number; timeScale: number; sdTiming: Record<string, string>; ollama: typeof realOllama };
  bursts: BurstFigures[];
  dropToGrantMs: { p50: number; p99: number; samples: number };
  targetP99Ms: number;
  meetsTarget: boolean;
  violations: number;
}

async function burst(bench: BenchServer, size: number, round: number): Promise<ImageBurst & { dropToGrant?: number }> {
  await bench.settle();
  const sent = await imageBurst(bench.url, size, (i) => ({ model: "sd15", prompt: `a paper boat number ${i} on a pond, round ${round}`, size: "512x512", steps: fourStep.steps }));
  const drop = bench.drops.find((t) => t >= sent.since);
  const grant = bench.log.find((l) => l.at >= sent.since && l.message === "GPU granted" && l.fields.phase === "diffusion")?.at;
  return { ...sent, ...(drop !== undefined && grant !== undefined ? { dropToGrant: grant - drop } : {}) };
}

export async function run(options: { rounds?: number } = {}): Promise<SwapsResult> {
  const rounds = options.rounds ?? (Number(process.env.BENCH_ROUNDS) || (quick ? 1 : 3));
  const bench = await startBenchServer({ ollama: { ...realOllama }, sdEnv: fourStep.env });
  const bursts: BurstFigures[] = [];
  try {
    await burst(bench, 1, -1); // warm-up: the first request of a process compiles the graph
    for (const size of BURST_SIZES) {
      await bench.settle();
      const before = bench.deps.scheduler.stats();
      const loadsBefore = bench.ollama.stats.modelLoads;
      const samples: number[] = [];
      const walls: number[] = [];
      let images = 0;
      let failed = 0;
      for (let r = 0; r < rounds; r++) {
        const b = await burst(bench, size, r);
        images += b.images;
        failed += b.failed;
        walls.push(b.wallMs);
        if (b.dropToGrant !== undefined) samples.push(b.dropToGrant);
      }
      await bench.settle();
      const after = bench.deps.scheduler.stats();
      const unloads = after.unloads.count - before.unloads.count;
      const reloads = after.reloads.count - before.reloads.count;
      bursts.push({
        burst: size,
        rounds,
        images,
        failedRequests: failed,
        unloads,
        reloads,
        unloadsPerBurst: unloads / rounds,
        reloadsPerBurst: reloads / rounds,
        ollamaModelLoads: bench.ollama.stats.modelLoads - loadsBefore,
        dropToGrantMs: { p50: round(percentile(samples, 50)), p99: round(percentile(samples, 99)), max: round(Math.max(...samples)), samples: samples.map((s) => round(s)) },
        burstWallMs: { p50: round(percentile(walls, 50)), max: round(Math.max(...walls)) },
      });
    }
    const all = bursts.flatMap((b) => b.dropToGrantMs.samples);
    const p99 = percentile(all, 99);
    return {
      setup: { burstSizes: BURST_SIZES, rounds, steps: fourStep.steps, timeScale, sdTiming: fourStep.env, ollama: realOllama },
      bursts,
      dropToGrantMs: { p50: round(percentile(all, 50)), p99: round(p99), samples: all.length },
      targetP99Ms: TARGET_P99_MS,
      meetsTarget: p99 < TARGET_P99_MS,
      violations: bench.violations(),
    };
  } finally {
    await bench.close();
  }
}

export function printTable(result: SwapsResult): void {
  console.log(
    `swaps: bursts of concurrent POST /v1/images/generations (refine on, ${result.setup.steps} steps at 1/${result.setup.timeScale} of gen-basic), ` +
      `Ollama linger ${result.setup.ollama.unloadLingerMs} ms, reload ${result.setup.ollama.loadMs} ms`,
  );
  printRows([
    ["burst", "rounds", "images", "failed", "unloads/burst", "reloads/burst", "Ollama loads", "drop→grant p50", "p99", "burst wall p50"],
    ...result.bursts.map((b) => [
      String(b.burst),
      String(b.rounds),
      String(b.images),
      String(b.failedRequests),
      b.unloadsPerBurst.toFixed(2),
      b.reloadsPerBurst.toFixed(2),
      String(b.ollamaModelLoads),
      ms(b.dropToGrantMs.p50),
      ms(b.dropToGrantMs.p99),
      ms(b.burstWallMs.p50, 0),
    ]),
  ]);
  console.log(
    `drop→grant overall: p50 ${ms(result.dropToGrantMs.p50)}, p99 ${ms(result.dropToGrantMs.p99)} over ${result.dropToGrantMs.samples} bursts ` +
      `(target p99 < ${result.targetP99Ms} ms: ${result.meetsTarget ? "met" : "NOT met"}); GPU violations: ${result.violations}`,
  );
}

runWhenMain(import.meta.url, run, printTable, (r) => r.violations !== 0);
