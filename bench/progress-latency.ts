/**
 * How late does a step reach us? Runs the sd-cli double N times; the double appends the
 * moment it wrote each step bar (FAKE_SD_TIMESTAMPS, performance.timeOrigin + now()) and
 * we note the moment the runner hands us the matching `step` event, on the same clock.
 * Also measures the runner's own overhead per generation: spawn → first event and
 * process exit → result.
 *
 *   npx tsx bench/progress-latency.ts [runs] [steps] [stepMs]
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";
import { loadConfig } from "../src/config/index.js";
import { generateImages } from "../src/diffusion/index.js";
import { ModelRegistry } from "../src/models/index.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export interface ProgressLatencyOptions {
  runs?: number;
  steps?: number;
  /** FAKE_SD_STEP_MS: small, so the bench measures delivery, not sampling. */
  stepMs?: number;
  bin?: string;
}

export interface Percentiles {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

export interface ProgressLatencyResult {
  runs: number;
  steps: number;
  /** sd-cli wrote a step bar → the runner emitted the step event (ms). */
  stepLatencyMs: Percentiles;
  /** Runner overhead per generation (ms). */
  spawnToFirstEventMs: Percentiles;
  exitToResultMs: Percentiles;
  /** Step events without a matching timestamp or vice versa (should be 0). */
  unmatchedSteps: number;
  targetP99Ms: number;
  meetsTarget: boolean;
}

export async function run(options: ProgressLatencyOptions = {}): Promise<ProgressLatencyResult> {
  const runs = options.runs ?? 20;
  const steps = options.steps ?? 20;
  const stepMs = options.stepMs ?? 5;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-bench-"));
  try {
    const modelsDir = path.join(dir, "models");
    fs.mkdirSync(modelsDir);
    const config = loadConfig({
      SD_CPP_BIN: options.bin ?? path.join(repoRoot, "tests/fakes/sd-cli.mjs"),
      MODELS_DIR: modelsDir,
      OUTPUT_DIR: path.join(dir, "outputs"),
      DEFAULT_IMAGE_MODEL: "sd15",
    });
    const registry = new ModelRegistry({ modelsDir, defaultModel: "sd15" });
    for (const file of registry.files(registry.resolve("sd15"))) fs.writeFileSync(file.path, "");

    const latencies: number[] = [];
    const firstEvent: number[] = [];
    const exitToResult: number[] = [];
    let unmatched = 0;
    for (let i = 0; i < runs; i++) {
      const stampsFile = path.join(dir, `stamps-${i}.jsonl`);
      const seen = new Map<string, number>();
      const result = await generateImages(
        { prompt: "a lighthouse at dusk", width: 64, height: 64, steps, seed: i },
        { config, registry },
        {
          env: { FAKE_SD_TIMESTAMPS: stampsFile, FAKE_SD_STEP_MS: String(stepMs), FAKE_SD_LOAD_MS: "2", FAKE_SD_DECODE_MS: "2" },
          onEvent: (e) => {
            if (e.type === "step") seen.set(`${e.imageIndex + 1}:${e.step}`, performance.timeOrigin + performance.now());
          },
        },
      );
      const stamps = fs
        .readFileSync(stampsFile, "utf8")
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as { step: number; image: number; at: number });
      for (const stamp of stamps) {
        const at = seen.get(`${stamp.image}:${stamp.step}`);
        if (at === undefined) unmatched++;
        else latencies.push(at - stamp.at);
      }
      unmatched += Math.max(0, seen.size - stamps.length);
      if (result.timings.spawnToFirstEventMs !== undefined) firstEvent.push(result.timings.spawnToFirstEventMs);
      exitToResult.push(result.timings.exitToResultMs);
      for (const image of result.images) fs.rmSync(image.path, { force: true });
    }
    const stepLatencyMs = percentiles(latencies);
    const targetP99Ms = 2;
    return {
      runs,
      steps,
      stepLatencyMs,
      spawnToFirstEventMs: percentiles(firstEvent),
      exitToResultMs: percentiles(exitToResult),
      unmatchedSteps: unmatched,
      targetP99Ms,
      meetsTarget: stepLatencyMs.p99 < targetP99Ms && unmatched === 0,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Nearest-rank percentiles. */
function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
  return { n: sorted.length, p50: rank(50), p99: rank(99), max: sorted.at(-1) ?? Number.NaN };
}

export function printTable(r: ProgressLatencyResult): void {
  const ms = (v: number) => `${v.toFixed(3)} ms`;
  const rows: [string, Percentiles][] = [
    ["step written → step event", r.stepLatencyMs],
    ["spawn → first event", r.spawnToFirstEventMs],
    ["exit → result", r.exitToResultMs],
  ];
  console.log(`progress latency: ${r.runs} runs × ${r.steps} steps (sd-cli double)`);
  console.log(`${"measure".padEnd(28)}${"n".padStart(6)}${"p50".padStart(13)}${"p99".padStart(13)}${"max".padStart(13)}`);
  for (const [name, p] of rows) {
    console.log(`${name.padEnd(28)}${String(p.n).padStart(6)}${ms(p.p50).padStart(13)}${ms(p.p99).padStart(13)}${ms(p.max).padStart(13)}`);
  }
  console.log(
    `target: step p99 < ${r.targetP99Ms} ms → ${r.meetsTarget ? "met" : "NOT met"}` +
      (r.unmatchedSteps > 0 ? ` (${r.unmatchedSteps} unmatched steps)` : ""),
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const [runs, steps, stepMs] = process.argv.slice(2).map(Number);
  run({
    runs: Number.isFinite(runs) ? runs : undefined,
    steps: Number.isFinite(steps) ? steps : undefined,
    stepMs: Number.isFinite(stepMs) ? stepMs : undefined,
  })
    .then(printTable)
    .catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    });
}
