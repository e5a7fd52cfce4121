/**
 * VRAM_POLICY=fit against VRAM_POLICY=swap, side by side in one run, on a simulated 12 GB
 * card with a 2.5 GB LLM: 8 clients send `POST /v1/images/generations` (SD 1.5 at 512x512,
 * 4 steps, refine off) at the same moment. Under swap the LLM leaves VRAM for the burst
 * and comes back after it; under fit each drawing (3 GB) runs beside it.
 *
 * Figures per policy:
 * - wall time: first request sent → last image answered;
 * - LLM availability: the share of the burst during which a chat would be answered at
 *   once, measured from outside: a client sends a short chat through the Ollama gateway
 *   (`/ollama/api/chat`) every 100 ms while the burst runs, and a chat counts as answered
 *   at once when it took no more than the chat's own time plus 150 ms;
 * - unloads and reloads, the chats' latency p50/p99.
 *
 * The sd-cli double is timed from fixtures/sd-server/serve-txt2img-twice's first request
 * (lib/sd-timing.ts serveCapture), Ollama as on the reference box (lib/ollama-timing.ts),
 * both BENCH_TIME_SCALE times faster for the images (the LLM's own times are real).
 *
 *   npx tsx bench/vram-fit.ts
 */
import fs from "node:fs";
import path from "node:path";
import { CARDS, readOoms } from "../tests/fakes/fake-gpu.mjs";
import { imageBurst } from "./lib/image-burst.js";
import { realOllama } from "./lib/ollama-timing.js";
import { serveCapture, timeScale } from "./lib/sd-timing.js";
import { LLM_MODEL, SD15_FILE, startBenchServer, type BenchServer } from "./lib/server-stack.js";
import { epochNow, percentile, printRows, round, runWhenMain } from "./lib/stats.js";

const IMAGES = 8;
const PROBE_EVERY_MS = 100;
const AT_ONCE_SLACK_MS = 150;
const POLICIES = ["swap", "fit"] as const;
type Policy = (typeof POLICIES)[number];

export interface PolicyFigures {
  policy: Policy;
  images: number;
  failed: number;
  wallMs: number;
  unloads: number;
  reloads: number;
  swapsAvoided: number;
  chats: number;
  chatsAtOnce: number;
  /** chatsAtOnce / chats: the share of the burst with the LLM answering at once. */
  llmAvailability: number;
  chatMs: { p50: number; p99: number };
  violations: number;
  ooms: number;
}

export interface VramFitResult {
  setup: { card: string; llmGB: number; images: number; size: string; steps: number; timeScale: number; probeEveryMs: number; chatMs: number };
  policies: PolicyFigures[];
  /** fit wall / swap wall. */
  wallRatio: number;
}

async function chat(bench: BenchServer): Promise<number> {
  const started = epochNow();
  const res = await fetch(`${bench.url}/ollama/api/chat`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: LLM_MODEL, messages: [{ role: "user", content: "hi" }], stream: false }),
  });
  await res.arrayBuffer();
  return epochNow() - started;
}

async function runPolicy(policy: Policy): Promise<PolicyFigures> {
  const bench = await startBenchServer({
    card: CARDS["12GB"],
    ollama: { ...realOllama, modelSizes: { [LLM_MODEL]: 2.5e9 } },
    env: { VRAM_POLICY: policy, SD_BACKEND: "cli", MAX_BATCH: "8" },
    sdEnv: serveCapture.cliEnv(),
  });
  try {
    // SD 1.5's real weight file (sparse), so the ledger's estimate reads a real size.
    fs.truncateSync(path.join(bench.root, "models", SD15_FILE), 2 * 2 ** 30);
    await bench.settle();
    const since = epochNow();
    let burstOver = false;
    const probes: number[] = [];
    const prober = (async () => {
      while (!burstOver) {
        const next = epochNow() + PROBE_EVERY_MS;
        probes.push(await chat(bench));
        const wait = next - epochNow();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      }
    })();
    const sent = await imageBurst(bench.url, IMAGES, (i) => ({ model: "sd15", prompt: `a paper boat number ${i}`, size: "512x512", steps: serveCapture.steps, seed: i, refine: false }));
    const wallMs = epochNow() - since;
    burstOver = true;
    await prober;
    await bench.settle();
    const stats = bench.deps.scheduler.stats();
    const atOnce = probes.filter((ms) => ms <= realOllama.chatDelayMs + AT_ONCE_SLACK_MS).length;
    return {
      policy,
      images: sent.images,
      failed: sent.failed,
      wallMs: round(wallMs),
      unloads: stats.unloads.count,
      reloads: stats.reloads.count,
      swapsAvoided: stats.fit?.besideLlm ?? 0,
      chats: probes.length,
      chatsAtOnce: atOnce,
      llmAvailability: round(atOnce / Math.max(1, probes.length), 2),
      chatMs: { p50: round(percentile(probes, 50)), p99: round(percentile(probes, 99)) },
      violations: bench.violations(),
      ooms: readOoms(bench.gpuDir).length,
    };
  } finally {
    await bench.close();
  }
}

export async function run(): Promise<VramFitResult> {
  const policies: PolicyFigures[] = [];
  for (const policy of POLICIES) policies.push(await runPolicy(policy));
  const [swap, fit] = policies;
  return {
    setup: { card: "12 GB", llmGB: 2.5, images: IMAGES, size: "512x512", steps: serveCapture.steps, timeScale, probeEveryMs: PROBE_EVERY_MS, chatMs: realOllama.chatDelayMs },
    policies,
    wallRatio: round(fit!.wallMs / swap!.wallMs, 2),
  };
}

export function printTable(result: VramFitResult): void {
  const s = result.setup;
  console.log(
    `vram-fit: ${s.images} concurrent images (SD 1.5 ${s.size}, ${s.steps} steps, sd-cli at 1/${s.timeScale}) on a simulated ${s.card} card with a ${s.llmGB} GB LLM; ` +
      `a chat every ${s.probeEveryMs} ms through /ollama (answered at once: ≤ ${s.chatMs} + ${AT_ONCE_SLACK_MS} ms)`,
  );
  printRows([
    ["policy", "images", "failed", "wall (ms)", "unloads", "reloads", "swaps avoided", "chats", "LLM available", "chat p50 / p99 (ms)", "violations", "OOMs"],
    ...result.policies.map((p) => [
      p.policy,
      String(p.images),
      String(p.failed),
      p.wallMs.toFixed(0),
      String(p.unloads),
      String(p.reloads),
      String(p.swapsAvoided),
      String(p.chats),
      `${Math.round(p.llmAvailability * 100)} %`,
      `${p.chatMs.p50.toFixed(0)} / ${p.chatMs.p99.toFixed(0)}`,
      String(p.violations),
      String(p.ooms),
    ]),
  ]);
  console.log(`fit / swap wall time: ${result.wallRatio}`);
}

runWhenMain(import.meta.url, run, printTable, (r) => r.policies.some((p) => p.failed > 0 || p.violations > 0));
