/**
 * `npm run bench`: every benchmark under bench/, one after the other (they share the
 * cores, so never at once), each against the real server with the doubles. It prints one
 * table of the figures that matter and writes them, with every bench's full figures and
 * the machine and Node that produced them, to bench/results/latest.json.
 *
 *   npm run bench                  the full run (a few minutes on 2 cores)
 *   BENCH_QUICK=1 npm run bench    fewer samples, for trying a change
 *   BENCH_TIME_SCALE=n             play the sd-cli capture n times faster (default 20)
 *
 * Each bench also runs alone (npx tsx bench/<name>.ts) and then prints its detailed table.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as burstBackends from "./burst-backends.js";
import * as vramFit from "./vram-fit.js";
import * as gateway from "./gateway.js";
import * as orchestration from "./orchestration.js";
import * as overhead from "./overhead.js";
import * as progressLatency from "./progress-latency.js";
import * as reloadVsImage from "./reload-vs-image.js";
import * as rss from "./rss.js";
import * as swaps from "./swaps.js";
import * as unloadConfirm from "./unload-confirm.js";
import { fourStep, timeScale, twentyStep } from "./lib/sd-timing.js";
import { ms, printRows, quick } from "./lib/stats.js";

interface Results {
  progressLatency?: progressLatency.ProgressLatencyResult;
  overhead?: overhead.OverheadResult;
  orchestration?: orchestration.OrchestrationResult;
  swaps?: swaps.SwapsResult;
  unloadConfirm?: unloadConfirm.UnloadConfirmResult;
  reloadVsImage?: reloadVsImage.ReloadVsImageResult;
  rss?: rss.RssResult;
  gateway?: gateway.GatewayResult;
  burstBackends?: burstBackends.BurstBackendsResult;
  vramFit?: vramFit.VramFitResult;
}

const results: Results = {};
const errors: Record<string, string> = {};
const durationsS: Record<string, number> = {};
const started = Date.now();
const loadAverageAtStart = os.loadavg().map((l) => Math.round(l * 100) / 100);

async function step<K extends keyof Results>(key: K, name: string, run: () => Promise<NonNullable<Results[K]>>): Promise<void> {
  process.stderr.write(`bench: ${name}...`);
  const t0 = Date.now();
  try {
    results[key] = await run();
  } catch (err) {
    errors[name] = err instanceof Error ? (err.stack ?? err.message) : String(err);
  }
  durationsS[name] = Math.round((Date.now() - t0) / 100) / 10;
  process.stderr.write(errors[name] ? ` FAILED after ${durationsS[name]} s\n${errors[name]}\n` : ` ${durationsS[name]} s\n`);
}

await step("progressLatency", "progress-latency", progressLatency.run);
await step("overhead", "overhead", overhead.run);
await step("orchestration", "orchestration", orchestration.run);
await step("swaps", "swaps", () => swaps.run());
await step("unloadConfirm", "unload-confirm", unloadConfirm.run);
await step("reloadVsImage", "reload-vs-image", reloadVsImage.run);
await step("rss", "rss", rss.run);
await step("gateway", "gateway", gateway.run);
await step("burstBackends", "burst-backends", () => burstBackends.run());
await step("vramFit", "vram-fit", vramFit.run);

// ---------------------------------------------------------------------------------- the table

type Row = [figure: string, value: string, how: string];
const rows: Row[] = [];
const failed = (name: string): Row => [name, "FAILED", errors[name]?.split("\n")[0] ?? ""];

const pl = results.progressLatency;
if (pl) {
  rows.push(["progress latency p50 / p99", `${ms(pl.stepToClientMs.p50, 2)} / ${ms(pl.stepToClientMs.p99, 2)}`, `sd-cli step bar → SSE client, ${pl.stepToClientMs.n} steps, ${pl.unmatchedSteps} lost`]);
} else rows.push(failed("progress-latency"));

const oh = results.overhead;
if (oh) {
  for (const p of oh.profiles) {
    rows.push([
      `server overhead per image, ${p.profile}`,
      `${ms(p.overheadMs.p50)} (${p.overheadPctOfWall} %)`,
      `median of ${p.requests}; % of a ${ms(p.wallMs.p50, 0)} image; ${p.overheadPctAtRealSpeed} % at the capture's real speed`,
    ]);
  }
  rows.push(["time to first SSE byte, chat", ms(oh.firstSseByteMs.chatCompletions.p50, 2), `p50 of ${oh.firstSseByteMs.samples}, POST /v1/chat/completions stream`]);
  rows.push(["time to first SSE byte, images", ms(oh.firstSseByteMs.imagesGenerations.p50, 2), `p50 of ${oh.firstSseByteMs.samples}, POST /v1/images/generations stream`]);
} else rows.push(failed("overhead"));

const orc = results.orchestration;
if (orc) {
  for (const v of orc.variants) {
    if (v.lingerMs === 0) {
      rows.push([
        `orchestration, linger 0 (overhead.ts's setting)`,
        `${ms(v.costMs.p50)} vs ${ms(v.overheadStyleMs?.p50)}`,
        `from outside vs as overhead.ts counts the same ${v.images} images (sd spawn()→'exit', Ollama our fetch()): the difference is fork/exec/teardown and our side of each Ollama call`,
      ]);
      continue;
    }
    rows.push([
      `orchestration cost per image, ${v.variant}, p50 / p99`,
      `${ms(v.costMs.p50)} / ${ms(v.costMs.p99)}`,
      `64x64 from outside: wall − the sd process's life (exec → exit) − Ollama's own time (linger ${v.lingerMs} ms, ${v.poll} poll, n ${v.images}); ` +
        `by sd's own clock (its Node start and end counted as ours): ${ms(v.ownClockCostMs.p50)} / ${ms(v.ownClockCostMs.p99)}; poll gap mean ${ms(v.windowsMean["poll gap"])}`,
    ]);
  }
} else rows.push(failed("orchestration"));

const sw = results.swaps;
if (sw) {
  for (const b of sw.bursts) {
    rows.push([
      `swaps per burst of ${b.burst}`,
      `${b.unloadsPerBurst.toFixed(2)} unload + ${b.reloadsPerBurst.toFixed(2)} reload`,
      `${b.rounds} bursts, ${b.images} images${b.failedRequests ? `, ${b.failedRequests} FAILED` : ""}; drop→grant p50 ${ms(b.dropToGrantMs.p50, 0)}`,
    ]);
  }
} else rows.push(failed("swaps"));

const uc = results.unloadConfirm;
if (uc) {
  for (const r of uc.rows) {
    rows.push([
      `unload-confirm, ${r.schedule} poll, linger ${r.lingerMs} ms, p50 / p99`,
      `${ms(r.unloadToConfirmedMs.p50, 0)} / ${ms(r.unloadToConfirmedMs.p99, 0)}`,
      `unload request → /api/ps empty (n ${r.samples}); polling adds ${ms(r.beyondLingerMs.p50, 0)} / ${ms(r.beyondLingerMs.p99, 0)} beyond the linger`,
    ]);
  }
} else rows.push(failed("unload-confirm"));

const rv = results.reloadVsImage;
if (rv) {
  for (const m of rv.modes) {
    rows.push([
      `image vs LLM reload, ${m.mode}`,
      `${ms(m.imageMs, 0)} vs ${ms(m.reloadedMs, 0)}`,
      `image ${m.imageFirst ? "first" : "LATE"} by ${ms(m.gapMs.p50, 0)} (min ${ms(m.gapMs.min, 0)}); reload takes ${rv.loadMs} ms`,
    ]);
  }
} else rows.push(failed("reload-vs-image"));

const bb = results.burstBackends;
if (bb) {
  for (const b of bb.bursts) {
    const ratio = b.backend === "server" ? bb.ratios.find((r) => r.burst === b.burst)?.ratio : undefined;
    rows.push([
      `burst of ${b.burst}, ${b.backend === "cli" ? "sd-cli" : "sd-server"}`,
      `${b.modelLoadsPerBurst.toFixed(2)} loads, ${ms(b.wallMs.p50, 0)}`,
      `${b.images} images${b.failedRequests ? `, ${b.failedRequests} FAILED` : ""}${ratio !== undefined ? `; server/cli wall ${ratio}` : ""}`,
    ]);
  }
} else rows.push(failed("burst-backends"));

const vf = results.vramFit;
if (vf) {
  for (const p of vf.policies) {
    rows.push([
      `burst of ${vf.setup.images} on ${vf.setup.card}, VRAM_POLICY=${p.policy}`,
      `${ms(p.wallMs, 0)}, LLM available ${Math.round(p.llmAvailability * 100)} %`,
      `${p.unloads} unload + ${p.reloads} reload, ${p.swapsAvoided} swaps avoided; chat p50 ${ms(p.chatMs.p50, 0)}${p.failed ? `; ${p.failed} FAILED` : ""}`,
    ]);
  }
} else rows.push(failed("vram-fit"));

const mem = results.rss;
if (mem) {
  rows.push(["idle RSS", `${mem.idleMiB} MiB`, `after warm-up (${mem.startedMiB} MiB at start); ${mem.entry}`]);
  rows.push([`RSS with ${mem.streams} open streams`, `${mem.streamsMiB} MiB`, `${mem.perStreamKiB} KiB per stream; ${mem.openAtReading} open at the reading`]);
} else rows.push(failed("rss"));

const gw = results.gateway;
if (gw) {
  const signed = (v: number, digits: number) => `${v >= 0 ? "+" : ""}${ms(v, digits)}`;
  rows.push([
    "Ollama gateway: added time to first token p50 / p99",
    `${signed(gw.addedMs.p50, 2)} / ${signed(gw.addedMs.p99, 2)}`,
    `streaming /ollama/api/chat vs straight to Ollama, GPU free, ${gw.samples} each; direct ${ms(gw.firstTokenMs.direct.p50, 2)} / ${ms(gw.firstTokenMs.direct.p99, 2)}`,
  ]);
  rows.push([
    `Ollama gateway: ${gw.stream.tokens}-token stream, max chunk delay`,
    `${ms(gw.stream.gatewayGapMs.max, 0)} (direct ${ms(gw.stream.directGapMs.max, 0)})`,
    `Ollama writes a line → client has it, ±1 ms; p99 ${ms(gw.stream.gatewayGapMs.p99, 0)}; whole stream ${ms(gw.stream.gatewayTotalMs, 0)} vs ${ms(gw.stream.directTotalMs, 0)}`,
  ]);
} else rows.push(failed("gateway"));

const violations =
  (pl?.violations ?? 0) + (oh?.violations ?? 0) + (orc?.violations ?? 0) + (sw?.violations ?? 0) + (rv?.violations ?? 0) + (mem?.violations ?? 0) + (gw?.violations ?? 0);
rows.push(["GPU invariant violations", String(violations), "the LLM and sd-cli in VRAM at once, by the simulated GPU"]);

/** The table's figures as numbers, for whoever compares runs. */
const figures = {
  progressLatencyMs: pl && { p50: pl.stepToClientMs.p50, p99: pl.stepToClientMs.p99, n: pl.stepToClientMs.n },
  overheadPerImage:
    oh && Object.fromEntries(oh.profiles.map((p) => [p.profile, { medianMs: p.overheadMs.p50, pctOfImage: p.overheadPctOfWall, pctAtRealSpeed: p.overheadPctAtRealSpeed, imageMs: p.wallMs.p50 }])),
  orchestrationCostMs:
    orc &&
    Object.fromEntries(
      orc.variants.map((v) => [
        v.variant,
        { p50: v.costMs.p50, p99: v.costMs.p99, ownClockP50: v.ownClockCostMs.p50, ownClockP99: v.ownClockCostMs.p99, overheadStyleP50: v.overheadStyleMs?.p50, windowsMean: v.windowsMean },
      ]),
    ),
  firstSseByteMs: oh && { chatCompletions: oh.firstSseByteMs.chatCompletions.p50, imagesGenerations: oh.firstSseByteMs.imagesGenerations.p50 },
  swapsPerBurst: sw && Object.fromEntries(sw.bursts.map((b) => [String(b.burst), { unloads: b.unloadsPerBurst, reloads: b.reloadsPerBurst, dropToGrantP50Ms: b.dropToGrantMs.p50 }])),
  unloadConfirmMs:
    uc &&
    Object.fromEntries(
      uc.rows.map((r) => [`${r.schedule} poll, linger ${r.lingerMs}`, { p50: r.unloadToConfirmedMs.p50, p99: r.unloadToConfirmedMs.p99, beyondLingerP50: r.beyondLingerMs.p50, beyondLingerP99: r.beyondLingerMs.p99 }]),
    ),
  imageVsReload: rv && Object.fromEntries(rv.modes.map((m) => [m.mode, { imageMs: m.imageMs, reloadFinishedMs: m.reloadedMs, gapMs: m.gapMs.p50, imageFirst: m.imageFirst }])),
  rss: mem && { idleMiB: mem.idleMiB, streams: mem.streams, streamsMiB: mem.streamsMiB, perStreamKiB: mem.perStreamKiB },
  gateway: gw && { addedFirstTokenMs: gw.addedMs, firstTokenMs: { direct: gw.firstTokenMs.direct, gateway: gw.firstTokenMs.gateway }, streamMaxChunkDelayMs: { gateway: gw.stream.gatewayGapMs.max, direct: gw.stream.directGapMs.max } },
  gpuViolations: violations,
};

// ---------------------------------------------------------------------------------- machine

function osName(): string {
  try {
    const pretty = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(fs.readFileSync("/etc/os-release", "utf8"))?.[1];
    if (pretty) return `${pretty}, ${os.type()} ${os.release()} ${os.arch()}`;
  } catch {
    // not Linux, or no os-release
  }
  return `${os.type()} ${os.release()} ${os.arch()}`;
}

const cpus = os.cpus();
const machine = {
  cpu: cpus[0]?.model.trim() ?? "unknown",
  cores: cpus.length,
  memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
  os: osName(),
  node: process.version,
  // The box may be shared: a busy one makes every latency worse.
  loadAverageAtStart,
  loadAverageAtEnd: os.loadavg().map((l) => Math.round(l * 100) / 100),
  date: new Date().toISOString(),
};
const setup = {
  quick,
  timeScale,
  sdProfiles: [fourStep, twentyStep].map((p) => ({ name: p.name, source: p.source, env: p.env, expectedMs: Math.round(p.expectedMs), realMs: p.realMs })),
  durationsS,
  totalS: Math.round((Date.now() - started) / 1000),
};

console.log(
  `\nDiffuGen bench${quick ? " (BENCH_QUICK)" : ""}: real server + doubles; sd-cli double timed like fixtures/sd-cli/gen-basic ` +
    `(4 and 20 steps) at 1/${timeScale} of its real time`,
);
printRows([["figure", "value", "how"], ...rows], 3);
console.log(
  `\nran on ${machine.cpu} (${machine.cores} cores), ${machine.memoryGiB} GiB RAM, ${machine.os}, Node ${machine.node}, ` +
    `${machine.date}, in ${setup.totalS} s (load average ${machine.loadAverageAtStart.join(" ")} at start)`,
);

const file = path.join(path.dirname(fileURLToPath(import.meta.url)), "results", "latest.json");
fs.mkdirSync(path.dirname(file), { recursive: true });
fs.writeFileSync(
  file,
  JSON.stringify({ machine, setup, figures, table: rows.map(([figure, value, how]) => ({ figure, value, how })), results, errors }, null, 2) + "\n",
);
console.log(`figures in ${path.relative(process.cwd(), file)}`);
if (Object.keys(errors).length > 0 || violations > 0) process.exitCode = 1;
