/**
 * How late does a sampling step reach the user? The sd-cli double writes each step bar
 * and notes when (FAKE_SD_TIMESTAMPS: performance.timeOrigin + now(), in the child); an
 * SSE client of the real server (`POST /v1/images/generations` with `stream: true`, as
 * OpenWebUI's image button or the OpenAI SDK streams it) notes when the matching
 * `diffugen.progress` event with that step arrived, on the same clock. Between the two:
 * the pipe, sd-cli's output parser, the runner, LangGraph's custom stream, the job's
 * event channel, the formatter, the SSE writer, HTTP and the client's reader.
 *
 * The double is timed like the real run in fixtures/sd-cli/gen-basic (lib/sd-timing.ts),
 * for 4 and 20 steps, at 512x512; refine off (the LLM still leaves VRAM and comes back).
 *
 *   npx tsx bench/progress-latency.ts          (BENCH_QUICK=1: fewer runs)
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fourStep, twentyStep, type SdProfile } from "./lib/sd-timing.js";
import { startBenchServer } from "./lib/server-stack.js";
import { streamPost } from "./lib/sse-client.js";
import { runWhenMain, ms, printRows, quick, spread, type Spread } from "./lib/stats.js";

export interface ProgressLatencyResult {
  route: string;
  runs: { profile: string; runs: number; steps: number }[];
  /** sd-cli wrote a step bar → the SSE client had the step event (ms). */
  stepToClientMs: Spread;
  perProfile: { profile: string; stepToClientMs: Spread }[];
  /** Step bars without a matching event, or events without a bar (should be 0). */
  unmatchedSteps: number;
  violations: number;
}

interface StepStamp {
  step: number;
  image: number;
  at: number;
}

/** `runs` streamed images with one profile; the step latencies they showed. */
async function measure(profile: SdProfile, runs: number, stampsFile: string): Promise<{ latencies: number[]; unmatched: number; violations: number }> {
  // Every run of this stack's sd-cli double appends its step stamps to stampsFile.
  const bench = await startBenchServer({ sdEnv: { ...profile.env, FAKE_SD_TIMESTAMPS: stampsFile } });
  const latencies: number[] = [];
  let unmatched = 0;
  try {
    for (let i = 0; i < runs; i++) {
      await bench.settle();
      fs.writeFileSync(stampsFile, "");
      const arrived = new Map<number, number>();
      const result = await streamPost(
        `${bench.url}/v1/images/generations`,
        { model: "sd15", prompt: "a lighthouse at dusk, waves crashing", size: "512x512", steps: profile.steps, seed: i, refine: false, stream: true },
        {
          onMessage: (m) => {
            const data = JSON.parse(m.data) as { type?: string; step?: { current: number } };
            if (data.type === "diffugen.progress" && data.step && !arrived.has(data.step.current)) arrived.set(data.step.current, m.at);
          },
        },
      );
      if (result.status !== 200 || !result.messages.some((m) => m.event === "image_generation.completed")) {
        throw new Error(`stream answered ${result.status} without an image: ${result.messages.at(-1)?.data.slice(0, 300) ?? ""}`);
      }
      const stamps = fs
        .readFileSync(stampsFile, "utf8")
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as StepStamp);
      for (const stamp of stamps) {
        const at = arrived.get(stamp.step);
        if (at === undefined) unmatched++;
        else latencies.push(at - stamp.at);
      }
      unmatched += Math.max(0, arrived.size - stamps.length);
    }
    await bench.settle();
    return { latencies, unmatched, violations: bench.violations() };
  } finally {
    await bench.close();
  }
}

export async function run(): Promise<ProgressLatencyResult> {
  const plan: { profile: SdProfile; runs: number }[] = quick
    ? [
        { profile: fourStep, runs: 2 },
        { profile: twentyStep, runs: 1 },
      ]
    : [
        { profile: fourStep, runs: 6 },
        { profile: twentyStep, runs: 4 },
      ];
  const all: number[] = [];
  const perProfile: ProgressLatencyResult["perProfile"] = [];
  let unmatched = 0;
  let violations = 0;
  const stampsDir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-bench-steps-"));
  try {
    for (const { profile, runs } of plan) {
      const m = await measure(profile, runs, path.join(stampsDir, "step-stamps.jsonl"));
      all.push(...m.latencies);
      unmatched += m.unmatched;
      violations += m.violations;
      perProfile.push({ profile: profile.name, stepToClientMs: spread(m.latencies, 3) });
    }
  } finally {
    fs.rmSync(stampsDir, { recursive: true, force: true });
  }
  return {
    route: "POST /v1/images/generations stream:true (diffugen.progress events)",
    runs: plan.map((p) => ({ profile: p.profile.name, runs: p.runs, steps: p.profile.steps })),
    stepToClientMs: spread(all, 3),
    perProfile,
    unmatchedSteps: unmatched,
    violations,
  };
}

export function printTable(r: ProgressLatencyResult): void {
  console.log(`progress latency: sd-cli step bar written → SSE client has the step (${r.route})`);
  const rows = [["runs", "n", "p50", "p99", "max"]];
  for (const p of r.perProfile) {
    const runs = r.runs.find((x) => x.profile === p.profile)?.runs ?? 0;
    rows.push([`${runs} x ${p.profile}`, String(p.stepToClientMs.n), ms(p.stepToClientMs.p50, 3), ms(p.stepToClientMs.p99, 3), ms(p.stepToClientMs.max, 3)]);
  }
  rows.push(["all", String(r.stepToClientMs.n), ms(r.stepToClientMs.p50, 3), ms(r.stepToClientMs.p99, 3), ms(r.stepToClientMs.max, 3)]);
  printRows(rows);
  console.log(`steps without a matching event: ${r.unmatchedSteps}; GPU violations: ${r.violations}`);
}

runWhenMain(import.meta.url, run, printTable);
