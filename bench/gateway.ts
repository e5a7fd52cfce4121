/**
 * What the Ollama gateway costs an LLM client: the real server (startServer, as `diffugen
 * serve` builds it) in front of the fake Ollama (in this process), the GPU free (the LLM
 * resident, nothing drawing), so every gated call is granted its lease at once and what is
 * measured is the gateway itself: routing, reading and checking the body, the lease, the
 * relay in and out.
 *
 * Time to first token: `POST /api/chat` (streaming, as OpenWebUI and the `ollama` CLI send
 * it) from the client's fetch() to the first body byte (the first NDJSON token), straight
 * to the Ollama double and through `/ollama`, alternating, after a warm-up. The figure is
 * the difference of the two at p50 and at p99 (target: +2 ms p50, +5 ms p99).
 *
 * A 2,000-token stream, relayed: the double writes one token a line, ~1 ms apart; for each
 * line, the gap between the double writing it (its `created_at`, ms resolution, same
 * process clock) and the client having it. The max over the stream says whether any chunk
 * was held back; the same stream straight from the double gives the baseline.
 *
 *   npx tsx bench/gateway.ts         (BENCH_QUICK=1: fewer samples; BENCH_N=n samples)
 */
import { readViolations } from "../tests/fakes/fake-gpu.mjs";
import { LLM_MODEL, startBenchServer, type BenchServer } from "./lib/server-stack.js";
import { percentile, printRows, quick, round, runWhenMain, spread, ms, type Spread } from "./lib/stats.js";

export interface GatewayResult {
  samples: number;
  /** fetch() → first NDJSON byte of a streaming /api/chat, straight to the double and through /ollama. */
  firstTokenMs: { direct: Spread; gateway: Spread };
  /** What the gateway adds: gateway minus direct, at p50 and at p99. */
  addedMs: { p50: number; p99: number };
  stream: {
    tokens: number;
    /** The double wrote a line → the client had it (ms, ±1 for created_at's resolution). */
    directGapMs: Spread;
    gatewayGapMs: Spread;
    /** Whole stream, fetch() → last line. */
    directTotalMs: number;
    gatewayTotalMs: number;
  };
  violations: number;
}

const STREAM_TOKENS = 2000;

/** fetch() → first body byte of a streaming chat; reads the rest so the connection is reused. */
async function firstToken(url: string, i: number): Promise<number> {
  const started = performance.now();
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model: LLM_MODEL, messages: [{ role: "user", content: `hello ${i}` }] }),
  });
  const reader = res.body!.getReader();
  const first = await reader.read();
  const at = performance.now() - started;
  if (res.status !== 200 || first.done) throw new Error(`${url} answered ${res.status} with no token`);
  while (!(await reader.read()).done);
  return at;
}

/** One long stream: per line, receipt time minus the double's created_at. */
async function streamGaps(url: string): Promise<{ gaps: number[]; totalMs: number; tokens: number }> {
  const started = performance.now();
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model: LLM_MODEL, messages: [{ role: "user", content: "tell me a long story" }] }),
  });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const gaps: number[] = [];
  let buffered = "";
  let tokens = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const now = Date.now();
    buffered += decoder.decode(value, { stream: true });
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = JSON.parse(buffered.slice(0, newline)) as { created_at: string; done: boolean };
      buffered = buffered.slice(newline + 1);
      gaps.push(now - Date.parse(line.created_at));
      if (!line.done) tokens += 1;
    }
  }
  return { gaps, totalMs: performance.now() - started, tokens };
}

async function measureFirstToken(bench: BenchServer, samples: number): Promise<{ direct: number[]; gateway: number[] }> {
  const direct: number[] = [];
  const gateway: number[] = [];
  const directUrl = `${bench.ollama.url}/api/chat`;
  const gatewayUrl = `${bench.url}/ollama/api/chat`;
  const warmup = quick ? 20 : 50;
  for (let i = 0; i < warmup; i++) {
    await firstToken(directUrl, i);
    await firstToken(gatewayUrl, i);
  }
  for (let i = 0; i < samples; i++) {
    // Alternating, and which goes first alternating too: drift and GC fall on both alike.
    if (i % 2 === 0) {
      direct.push(await firstToken(directUrl, i));
      gateway.push(await firstToken(gatewayUrl, i));
    } else {
      gateway.push(await firstToken(gatewayUrl, i));
      direct.push(await firstToken(directUrl, i));
    }
  }
  return { direct, gateway };
}

export async function run(): Promise<GatewayResult> {
  const samples = Number(process.env.BENCH_N ?? (quick ? 100 : 400));
  const bench = await startBenchServer({ ollama: { chatDelayMs: 0 } });
  try {
    await bench.settle();
    const ttft = await measureFirstToken(bench, samples);

    const words = Array.from({ length: STREAM_TOKENS }, (_, i) => `tok${i}`).join(" ");
    bench.ollama.setResponder(() => words);
    bench.ollama.configure({ chunkDelayMs: 1 });
    const direct = await streamGaps(`${bench.ollama.url}/api/chat`);
    const gateway = await streamGaps(`${bench.url}/ollama/api/chat`);
    if (direct.tokens !== STREAM_TOKENS || gateway.tokens !== STREAM_TOKENS) {
      throw new Error(`expected ${STREAM_TOKENS} tokens, got ${direct.tokens} direct and ${gateway.tokens} through the gateway`);
    }
    await bench.settle();
    return {
      samples,
      firstTokenMs: { direct: spread(ttft.direct), gateway: spread(ttft.gateway) },
      addedMs: {
        p50: round(percentile(ttft.gateway, 50) - percentile(ttft.direct, 50), 2),
        p99: round(percentile(ttft.gateway, 99) - percentile(ttft.direct, 99), 2),
      },
      stream: {
        tokens: STREAM_TOKENS,
        directGapMs: spread(direct.gaps, 1),
        gatewayGapMs: spread(gateway.gaps, 1),
        directTotalMs: round(direct.totalMs, 0),
        gatewayTotalMs: round(gateway.totalMs, 0),
      },
      violations: readViolations(bench.gpuDir).length,
    };
  } finally {
    await bench.close();
  }
}

export function printTable(r: GatewayResult): void {
  console.log(`Ollama gateway, GPU free: streaming POST /api/chat, ${r.samples} samples each way, alternating`);
  printRows([
    ["", "direct p50", "p99", "via /ollama p50", "p99", "added p50", "p99"],
    [
      "time to first token",
      ms(r.firstTokenMs.direct.p50, 2),
      ms(r.firstTokenMs.direct.p99, 2),
      ms(r.firstTokenMs.gateway.p50, 2),
      ms(r.firstTokenMs.gateway.p99, 2),
      `${r.addedMs.p50 >= 0 ? "+" : ""}${ms(r.addedMs.p50, 2)}`,
      `${r.addedMs.p99 >= 0 ? "+" : ""}${ms(r.addedMs.p99, 2)}`,
    ],
  ]);
  console.log(`\n${r.stream.tokens}-token stream: the double writes a line → the client has it (ms, ±1)`);
  printRows([
    ["", "p50", "p99", "max", "whole stream"],
    ["direct", ms(r.stream.directGapMs.p50), ms(r.stream.directGapMs.p99), ms(r.stream.directGapMs.max), ms(r.stream.directTotalMs, 0)],
    ["via /ollama", ms(r.stream.gatewayGapMs.p50), ms(r.stream.gatewayGapMs.p99), ms(r.stream.gatewayGapMs.max), ms(r.stream.gatewayTotalMs, 0)],
  ]);
  console.log(`\nGPU invariant violations: ${r.violations}`);
}

runWhenMain(import.meta.url, run, printTable, (r) => r.violations !== 0);
