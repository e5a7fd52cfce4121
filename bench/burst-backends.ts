/**
 * A burst of same-model images on each diffusion backend, side by side in one run:
 * SD_BACKEND=cli (a fresh sd-cli per image: every image loads the model) against
 * SD_BACKEND=server (sd-server kept for the burst: the first image loads it). 1, 4 and 8
 * clients send `POST /v1/images/generations` (64x64, 4 steps, refine off: the LLM's part is
 * the same for both and is not what is compared) to the real server at the same moment.
 *
 * Both doubles are timed from one capture, fixtures/sd-server/serve-txt2img-twice (see
 * lib/sd-timing.ts serveCapture), played BENCH_TIME_SCALE times faster; Ollama as on the
 * reference box (lib/ollama-timing.ts). Per backend and burst size it prints the model
 * loads per burst (sd-cli runs and sd-server starts, from the backends' own counts and the
 * doubles' spawn records), and the burst's wall time (first request sent → last image
 * answered); then the ratio server/cli.
 *
 *   npx tsx bench/burst-backends.ts    (BENCH_ROUNDS=n bursts per size, default 2, 1 with BENCH_QUICK=1)
 */
import path from "node:path";
import { readSpawns } from "../tests/fakes/fake-gpu.mjs";
import { imageBurst, type ImageBurst } from "./lib/image-burst.js";
import { realOllama } from "./lib/ollama-timing.js";
import { serveCapture, timeScale } from "./lib/sd-timing.js";
import { repoRoot, startBenchServer, type BenchServer } from "./lib/server-stack.js";
import { median, printRows, quick, round, runWhenMain } from "./lib/stats.js";

const BURST_SIZES = [1, 4, 8] as const;
const BACKENDS = ["cli", "server"] as const;
type Backend = (typeof BACKENDS)[number];
/** The bar: a burst of 8 on sd-server in at most 0.6 of sd-cli's wall time. */
const TARGET_RATIO = 0.6;

export interface BackendBurst {
  backend: Backend;
  burst: number;
  rounds: number;
  images: number;
  failedRequests: number;
  modelLoadsPerBurst: number;
  /** sd processes spawned per burst (sd-cli runs, or sd-server starts). */
  spawnsPerBurst: number;
  wallMs: { p50: number; samples: number[] };
}

export interface BurstBackendsResult {
  setup: { burstSizes: readonly number[]; rounds: number; steps: number; timeScale: number; source: string; ollama: typeof realOllama };
  bursts: BackendBurst[];
  /** server wall / cli wall per burst size. */
  ratios: { burst: number; ratio: number }[];
  targetRatio: number;
  meetsTarget: boolean;
  violations: Record<Backend, number>;
}

async function burst(bench: BenchServer, size: number, round: number): Promise<ImageBurst> {
  await bench.settle();
  return imageBurst(bench.url, size, (i) => ({ model: "sd15", prompt: `a paper boat number ${i}, round ${round}`, size: "64x64", steps: serveCapture.steps, seed: 1000 * round + i, refine: false }));
}

async function runBackend(backend: Backend, rounds: number): Promise<{ bursts: BackendBurst[]; violations: number }> {
  const bench = await startBenchServer({
    ollama: { ...realOllama },
    env: { SD_BACKEND: backend, SD_SERVER_BIN: path.join(repoRoot, "tests/fakes/sd-server.mjs"), MAX_BATCH: "8" },
    sdEnv: backend === "cli" ? serveCapture.cliEnv() : serveCapture.serverEnv(),
  });
  const bursts: BackendBurst[] = [];
  try {
    await burst(bench, 1, -1); // warm-up: the first request of a process compiles the graph
    for (const size of BURST_SIZES) {
      await bench.settle();
      const loadsBefore = bench.deps.backends.stats().loads[backend];
      const spawnsBefore = readSpawns(bench.gpuDir).length;
      const walls: number[] = [];
      let images = 0;
      let failed = 0;
      for (let r = 0; r < rounds; r++) {
        const b = await burst(bench, size, r);
        images += b.images;
        failed += b.failed;
        walls.push(b.wallMs);
      }
      await bench.settle();
      bursts.push({
        backend,
        burst: size,
        rounds,
        images,
        failedRequests: failed,
        modelLoadsPerBurst: (bench.deps.backends.stats().loads[backend] - loadsBefore) / rounds,
        spawnsPerBurst: (readSpawns(bench.gpuDir).length - spawnsBefore) / rounds,
        wallMs: { p50: round(median(walls)), samples: walls.map((w) => round(w)) },
      });
    }
    return { bursts, violations: bench.violations() };
  } finally {
    await bench.close();
  }
}

export async function run(options: { rounds?: number } = {}): Promise<BurstBackendsResult> {
  const rounds = options.rounds ?? (Number(process.env.BENCH_ROUNDS) || (quick ? 1 : 2));
  const cli = await runBackend("cli", rounds);
  const server = await runBackend("server", rounds);
  const bursts = [...cli.bursts, ...server.bursts];
  const ratios = BURST_SIZES.map((size) => {
    const c = cli.bursts.find((b) => b.burst === size)!;
    const s = server.bursts.find((b) => b.burst === size)!;
    return { burst: size, ratio: round(s.wallMs.p50 / c.wallMs.p50, 2) };
  });
  const eight = server.bursts.find((b) => b.burst === 8)!;
  return {
    setup: { burstSizes: BURST_SIZES, rounds, steps: serveCapture.steps, timeScale, source: serveCapture.source, ollama: realOllama },
    bursts,
    ratios,
    targetRatio: TARGET_RATIO,
    meetsTarget: (ratios.find((r) => r.burst === 8)?.ratio ?? Infinity) <= TARGET_RATIO && eight.modelLoadsPerBurst <= 1,
    violations: { cli: cli.violations, server: server.violations },
  };
}

export function printTable(result: BurstBackendsResult): void {
  console.log(
    `burst-backends: concurrent POST /v1/images/generations (64x64, ${result.setup.steps} steps, refine off), ` +
      `both doubles timed from ${result.setup.source} at 1/${result.setup.timeScale}`,
  );
  printRows([
    ["backend", "burst", "rounds", "images", "failed", "model loads/burst", "spawns/burst", "wall p50 (ms)", "server/cli"],
    ...result.bursts.map((b) => [
      b.backend,
      String(b.burst),
      String(b.rounds),
      String(b.images),
      String(b.failedRequests),
      b.modelLoadsPerBurst.toFixed(2),
      b.spawnsPerBurst.toFixed(2),
      b.wallMs.p50.toFixed(0),
      b.backend === "server" ? String(result.ratios.find((r) => r.burst === b.burst)?.ratio ?? "") : "",
    ]),
  ]);
  console.log(
    `target: a burst of 8 on sd-server ≤ 1 model load and ≤ ${result.targetRatio} × sd-cli's wall time: ${result.meetsTarget ? "met" : "NOT met"}; ` +
      `violations cli ${result.violations.cli}, server ${result.violations.server}`,
  );
}

runWhenMain(import.meta.url, () => run(), printTable, (r) => !r.meetsTarget || r.violations.cli + r.violations.server > 0);
