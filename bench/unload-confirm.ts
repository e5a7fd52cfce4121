/**
 * How long from asking Ollama to unload the LLM until we know it is gone. Ollama's unload
 * call returns before the model leaves /api/ps (REFERENCE.md §2), so OllamaResidency polls
 * /api/ps until the model is no longer listed; only then may sd-cli start. The real
 * OllamaResidency unloads the LLM from the fake Ollama with its linger set like the real
 * one: 200 ms usually, up to ~5 s when Ollama waits for the VRAM (lib/ollama-timing.ts),
 * and 1 s in between. Two poll schedules, side by side on the same lingers:
 *
 *   new   the product's default (src/llm/unload-poll.ts): every 3 ms for the first half
 *         second after the unload call, while the drop is expected; then 50 ms doubling to 100 ms
 *   old   before issue 14: 50 ms doubling to 100 ms from the unload call on
 *
 * Per sample, on one clock: the unload request reaching the double (its request log), the
 * model leaving the double's /api/ps (the simulated GPU file it rewrites, via inotify), and
 * unloadAll() resolving (confirmed). Printed per linger:
 *
 *   unload → confirmed   p50/p99 of the whole wait
 *   beyond linger        unload → confirmed minus the linger: what our side adds
 *   drop → confirmed     the same measured directly: how late the polling saw the drop
 *   polls                /api/ps requests per unload
 *
 *   npx tsx bench/unload-confirm.ts       (BENCH_QUICK=1: fewer samples)
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadConfig } from "../src/config/index.js";
import { OllamaResidency, silentLlmLogger } from "../src/llm/index.js";
import { defaultUnloadPoll } from "../src/llm/unload-poll.js";
import { startFakeOllama } from "../tests/fakes/ollama-server.js";
import { realOllama, slowUnloadLingerMs } from "./lib/ollama-timing.js";
import { OLD_POLL_SCHEDULE } from "./lib/poll-schedules.js";
import { LLM_MODEL, watchDrops } from "./lib/server-stack.js";
import { epochNow, runWhenMain, ms, printRows, quick, round, spread, type Spread } from "./lib/stats.js";

export interface UnloadConfirmRow {
  schedule: "new" | "old";
  lingerMs: number;
  samples: number;
  unloadToConfirmedMs: Spread;
  beyondLingerMs: Spread;
  dropToConfirmedMs: Spread;
  pollsPerUnload: number;
}

export interface UnloadConfirmResult {
  poll: { new: typeof defaultUnloadPoll; old: typeof OLD_POLL_SCHEDULE };
  rows: UnloadConfirmRow[];
}

async function measure(schedule: "new" | "old", lingerMs: number, samples: number): Promise<UnloadConfirmRow> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-bench-unload-"));
  const ollama = await startFakeOllama({ installed: [LLM_MODEL], resident: [LLM_MODEL], gpuDir: root, unloadLingerMs: lingerMs });
  const drops: number[] = [];
  const watch = watchDrops(root, drops);
  const config = loadConfig({ OLLAMA_BASE_URL: ollama.url, LLM_MODEL, UNLOAD_TIMEOUT_S: "30", LOG_LEVEL: "warn" });
  // The server's OllamaResidency (createDiffugenDeps): product defaults, no nvidia-smi here.
  const old = { pollFastMs: OLD_POLL_SCHEDULE.fastMs, pollFastForMs: OLD_POLL_SCHEDULE.fastForMs, pollInitialMs: OLD_POLL_SCHEDULE.initialMs, pollMaxMs: OLD_POLL_SCHEDULE.maxMs };
  const control = new OllamaResidency(config.llm, { logger: silentLlmLogger, env: { PATH: "" }, ...(schedule === "old" ? old : {}) });
  const total: number[] = [];
  const beyond: number[] = [];
  const dropToConfirmed: number[] = [];
  let polls = 0;
  try {
    for (let i = 0; i < samples; i++) {
      await control.reload();
      const since = epochNow();
      const requestsBefore = ollama.requests.length;
      const report = await control.unloadAll();
      const confirmed = epochNow();
      if (!report.unloaded.includes(LLM_MODEL)) throw new Error(`unloadAll did not unload ${LLM_MODEL}: ${JSON.stringify(report)}`);
      const seen = ollama.requests.slice(requestsBefore);
      const unloadAt = seen.find((r) => r.kind === "unload")?.at;
      const drop = drops.find((t) => t >= since);
      if (unloadAt === undefined || drop === undefined) throw new Error("the unload request or the drop went unseen");
      total.push(confirmed - unloadAt);
      beyond.push(confirmed - unloadAt - lingerMs);
      dropToConfirmed.push(confirmed - drop);
      polls += seen.filter((r) => r.kind === "ps").length;
    }
  } finally {
    watch.close();
    await ollama.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
  return {
    schedule,
    lingerMs,
    samples,
    unloadToConfirmedMs: spread(total, 1),
    beyondLingerMs: spread(beyond, 1),
    dropToConfirmedMs: spread(dropToConfirmed, 1),
    pollsPerUnload: round(polls / samples, 1),
  };
}

export async function run(): Promise<UnloadConfirmResult> {
  const plan: [number, number][] = quick
    ? [
        [realOllama.unloadLingerMs, 6],
        [1000, 2],
        [slowUnloadLingerMs, 1],
      ]
    : [
        [realOllama.unloadLingerMs, 20],
        [1000, 6],
        [slowUnloadLingerMs, 3],
      ];
  const rows: UnloadConfirmRow[] = [];
  for (const [linger, samples] of plan) {
    for (const schedule of ["new", "old"] as const) rows.push(await measure(schedule, linger, samples));
  }
  return { poll: { new: defaultUnloadPoll, old: OLD_POLL_SCHEDULE }, rows };
}

export function printTable(r: UnloadConfirmResult): void {
  console.log(
    `unload confirm: unload request → /api/ps confirmed empty; new: every ${r.poll.new.fastMs} ms for ${r.poll.new.fastForMs} ms, ` +
      `then ${r.poll.new.initialMs} doubling to ${r.poll.new.maxMs} ms; old: ${r.poll.old.initialMs} doubling to ${r.poll.old.maxMs} ms`,
  );
  printRows([
    ["schedule", "linger", "n", "unload→confirmed p50", "p99", "beyond linger p50", "p99", "drop→confirmed p50", "p99", "polls"],
    ...r.rows.map((row) => [
      row.schedule,
      `${row.lingerMs} ms`,
      String(row.samples),
      ms(row.unloadToConfirmedMs.p50),
      ms(row.unloadToConfirmedMs.p99),
      ms(row.beyondLingerMs.p50),
      ms(row.beyondLingerMs.p99),
      ms(row.dropToConfirmedMs.p50),
      ms(row.dropToConfirmedMs.p99),
      String(row.pollsPerUnload),
    ]),
  ]);
}

runWhenMain(import.meta.url, run, printTable);
