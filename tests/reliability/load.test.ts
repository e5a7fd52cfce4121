import fs from "node:fs";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { createPrng, type Prng } from "../integration/helpers/prng.js";
import { readSpawns } from "../fakes/fake-gpu.mjs";
import { callClient, type ClientName, type ClientResult } from "./helpers/clients.js";
import { errorShapeProblem } from "./helpers/error-shapes.js";
import { emptyFigures, recordFigures } from "./helpers/figures.js";
import { until } from "../helpers/until.js";
import { LLM, soakFactor, startReliabilityStack, whenQuiet, type ReliabilityStack } from "./helpers/reliability-stack.js";

/**
 * Load: many clients of every dialect at once, a fifth of them hanging up at a random
 * moment (while queued, refining, sampling or reading the answer). Every job the server
 * accepted must end (images, reply or cancelled; none stuck), no sd-cli may outlive its
 * job, the invariant must hold, and the LLM must be back. A full queue answers 429 with
 * Retry-After. The soak test runs rounds of this with faults switched on and off; it runs
 * short by default, DIFFUGEN_SOAK=1 makes it long.
 */

const figures = emptyFigures();
// A soak run (DIFFUGEN_SOAK) does more of everything: give each test as much more time.
vi.setConfig({ testTimeout: 30_000 * soakFactor });
/** These many clients all come from 127.0.0.1: one address, so no per-client stream cap (MAX_STREAMS_PER_CLIENT). */
const everyoneAtOnce = { maxStreamsPerClient: 0 };
let s: ReliabilityStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});
afterAll(() => recordFigures("load", figures));

type Traffic = { client: ClientName; chatMessage?: string };
const mix: Traffic[] = [
  { client: "chat", chatMessage: "hello, how are you?" },
  { client: "chat-stream", chatMessage: "what is a fox?" },
  { client: "chat-stream" },
  { client: "chat" },
  { client: "images" },
  { client: "images-stream" },
  { client: "edits" },
  { client: "seed" },
  { client: "seed-stream" },
  { client: "graph-stream" },
];

interface JobLedger {
  started: Set<string>;
  finished: Map<string, string>;
}

function watchJobs(stack: ReliabilityStack): JobLedger {
  const ledger: JobLedger = { started: new Set(), finished: new Map() };
  stack.runner.observe({
    jobStarted: (job) => ledger.started.add(job.id),
    jobFinished: (job, result) => ledger.finished.set(job.id, result.outcome.kind),
  });
  return ledger;
}

/** One client; with probability `disconnect` it hangs up after a random 0-1.5 s. */
async function oneClient(stack: ReliabilityStack, prng: Prng, disconnect: number): Promise<{ result: ClientResult; hungUp: boolean }> {
  const traffic = prng.pick(mix);
  const hangUp = prng.chance(disconnect);
  const controller = new AbortController();
  const timer = hangUp ? setTimeout(() => controller.abort(), prng.int(0, 1_500)) : undefined;
  try {
    const result = await callClient(stack.url, traffic.client, { chatMessage: traffic.chatMessage, refine: prng.chance(0.5), signal: controller.signal });
    return { result, hungUp: hangUp && controller.signal.aborted };
  } finally {
    clearTimeout(timer);
  }
}

function describeResult(r: ClientResult): string {
  return `${r.client}: ${r.status} ${r.kind} ${r.error ? `${r.error.code} ${r.error.message}` : ""}`.slice(0, 300);
}

/** Every job ended, none stuck; nothing left running; the invariant held; the LLM is back. */
async function expectAllReturned(stack: ReliabilityStack, ledger: JobLedger) {
  let quiet;
  try {
    quiet = await whenQuiet(stack, 30_000);
  } catch (err) {
    figures.stuckJobs += stack.runner.activeJobs;
    throw err;
  }
  figures.violations += quiet.violations.length;
  figures.orphans += quiet.orphans.length;
  expect([...ledger.started].filter((id) => !ledger.finished.has(id))).toEqual([]);
  for (const kind of ledger.finished.values()) expect(["images", "reply", "cancelled", "failed"]).toContain(kind);
  expect(quiet.violations).toEqual([]);
  expect(quiet.orphans).toEqual([]);
  expect(quiet.gpu).toBe("idle");
  expect(quiet.llmState).toBe("resident");
  expect(quiet.listed).toContain(LLM);
  // Cancelled runs leave no preview behind.
  expect(fs.readdirSync(stack.stack.outputDir).filter((f) => f.includes(".preview"))).toEqual([]);
}

describe("load", () => {
  it("50 concurrent mixed requests, 20% of clients hanging up: every job ends, nothing is left running", async () => {
    s = await startReliabilityStack({ env: { LOG_LEVEL: "silent", MAX_QUEUE: "100" }, server: everyoneAtOnce });
    const ledger = watchJobs(s);
    const prng = createPrng(Date.now());
    const outcomes: Awaited<ReturnType<typeof oneClient>>[] = [];
    for (let round = 0; round < soakFactor; round++) {
      outcomes.push(...(await Promise.all(Array.from({ length: 50 }, () => oneClient(s!, prng, 0.2)))));
    }
    figures.requests += outcomes.length;
    const hungUp = outcomes.filter((o) => o.hungUp).length;
    figures.faults += hungUp;

    for (const { result, hungUp: gone } of outcomes) {
      if (gone) continue;
      // No faults here: everyone who stayed gets a picture or a reply.
      expect(["image", "reply"], `seed ${prng.seed}: ${describeResult(result)}`).toContain(result.kind);
    }
    expect(hungUp, `seed ${prng.seed}`).toBeGreaterThan(0);
    await expectAllReturned(s, ledger);
    expect(ledger.started.size).toBeGreaterThan(0);
    // Each sd-cli belonged to a job the server accepted.
    expect(readSpawns(s.stack.gpuDir).length).toBeLessThanOrEqual(ledger.started.size);
  });

  it("a full queue answers 429 with Retry-After in the dialect's shape; the accepted jobs finish", async () => {
    s = await startReliabilityStack({ env: { LOG_LEVEL: "silent", MAX_QUEUE: "2" }, sdEnv: { FAKE_SD_STEP_MS: "60" }, server: everyoneAtOnce });
    const ledger = watchJobs(s);
    const clients: ClientName[] = ["images", "seed", "edits", "images", "seed", "edits", "images", "seed", "images-stream", "seed-stream", "chat-stream"];
    const responses = await Promise.all(
      clients.map(async (client) => {
        const r = await callClient(s!.url, client, { refine: false });
        return r;
      }),
    );
    figures.requests += responses.length;
    const refused = responses.filter((r) => r.error?.code === "queue_full");
    expect(refused.length, responses.map(describeResult).join("\n")).toBeGreaterThan(0);
    for (const r of responses) {
      if (r.error?.code !== "queue_full") {
        expect(r.kind, describeResult(r)).toBe("image");
        continue;
      }
      expect(r.error.shapeProblem, describeResult(r)).toBeUndefined();
      if (r.client.endsWith("stream") && r.status === 200) continue; // refused once streaming: an error event
      expect(r.status, describeResult(r)).toBe(429);
    }

    // The headers, on requests sent while the queue is surely full: one slow job on the GPU,
    // two waiting (their clients hang up afterwards, which cancels them).
    s.stack.deps.sdEnv!.FAKE_SD_STEP_MS = "400";
    const hangUp = new AbortController();
    const slow: Promise<ClientResult>[] = [];
    const state = () => s!.stack.deps.scheduler.state();
    slow.push(callClient(s.url, "images", { refine: false, extra: { steps: 20 }, signal: hangUp.signal }));
    await until("the first slow job to hold the GPU", () => state().gpu.kind === "diffusion");
    for (let waiting = 1; waiting <= 2; waiting++) {
      slow.push(callClient(s.url, "images", { refine: false, extra: { steps: 20 }, signal: hangUp.signal }));
      await until(`${waiting} slow jobs to wait for the GPU`, () => state().queue.length >= waiting);
    }
    for (const route of ["/v1/images/generations", "/generate"]) {
      const body = route === "/generate" ? { prompt: "a fox", width: 64, height: 64, steps: 2, refine: false } : { prompt: "a fox", size: "64x64", steps: 2, refine: false };
      const res = await fetch(`${s.url}${route}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      figures.requests += 1;
      const text = await res.text();
      expect(res.status, text).toBe(429);
      expect(Number(res.headers.get("retry-after")), text).toBeGreaterThanOrEqual(1);
      expect(Number.isInteger(Number(res.headers.get("retry-after")))).toBe(true);
      expect(res.headers.get("x-should-retry")).not.toBe("false");
      expect(errorShapeProblem(JSON.parse(text), route === "/generate" ? "diffugen" : "openai"), text).toBeUndefined();
    }
    hangUp.abort();
    figures.requests += slow.length;
    figures.faults += slow.length;
    for (const r of await Promise.all(slow)) expect(r.kind, describeResult(r)).toBe("aborted");
    s.stack.deps.sdEnv!.FAKE_SD_STEP_MS = "60";
    await expectAllReturned(s, ledger);
  });
});

describe("soak", () => {
  interface Round {
    name: string;
    sd?: Record<string, string>;
    ollama?: "down" | "reset-mid-stream" | "hang";
  }
  const rounds: Round[] = [
    { name: "calm" },
    { name: "sd-cli crashes", sd: { FAKE_SD_CRASH_AT_STEP: "2", FAKE_SD_CRASH_MODE: "abort" } },
    { name: "Ollama resets streams", ollama: "reset-mid-stream" },
    { name: "sd-cli out of memory", sd: { FAKE_SD_OOM: "1" } },
    { name: "Ollama down", ollama: "down" },
    { name: "garbage output", sd: { FAKE_SD_GARBAGE: "1" } },
  ];

  it(`rounds of mixed traffic with faults switched on and off (${2 * soakFactor} rounds; DIFFUGEN_SOAK for more)`, async () => {
    s = await startReliabilityStack({ env: { LOG_LEVEL: "silent", MAX_QUEUE: "100", REFINE_TIMEOUT_S: "0.5" }, server: everyoneAtOnce });
    const ledger = watchJobs(s);
    const prng = createPrng(Date.now());
    const sdEnv = s.stack.deps.sdEnv!;
    const count = 2 * soakFactor;
    for (let i = 0; i < count; i++) {
      const round = rounds[(i * 3 + prng.int(0, rounds.length - 1)) % rounds.length]!;
      Object.assign(sdEnv, round.sd ?? {});
      if (round.ollama) await s.stack.ollama.setFault({ kind: round.ollama });
      const outcomes = await Promise.all(Array.from({ length: 10 }, () => oneClient(s!, prng, 0.2)));
      figures.requests += outcomes.length;
      figures.faults += outcomes.filter((o) => o.hungUp).length + (round.sd || round.ollama ? outcomes.length : 0);
      for (const { result, hungUp } of outcomes) {
        if (hungUp) continue;
        const where = `seed ${prng.seed}, round "${round.name}": ${describeResult(result)}`;
        if (result.kind === "error") {
          // Only the sd-cli faults may fail a request, and then in the dialect's shape.
          expect(round.sd && !round.sd.FAKE_SD_GARBAGE, where).toBeTruthy();
          expect(result.error?.shapeProblem, where).toBeUndefined();
        } else {
          expect(["image", "reply"], where).toContain(result.kind);
        }
      }
      for (const key of Object.keys(round.sd ?? {})) delete sdEnv[key];
      if (round.ollama) {
        await s.stack.ollama.setFault(null);
        // A reload that failed while Ollama was away happens with the next LLM request.
        figures.requests += 1;
        await callClient(s.url, "chat", { chatMessage: "are you back?" });
      }
      await expectAllReturned(s, ledger);
    }
  });
});
