import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { readSpawns } from "../fakes/fake-gpu.mjs";
import { allClients, callClient, type ClientName, type ClientResult } from "./helpers/clients.js";
import { emptyFigures, recordFigures } from "./helpers/figures.js";
import { LLM, outputPngs, soakFactor, startReliabilityStack, whenQuiet, type ReliabilityStack } from "./helpers/reliability-stack.js";

/**
 * sd-cli failing every way the real one does (REFERENCE.md §1 exit behaviour; the double's
 * FAKE_SD_* modes), with a client of every dialect waiting on it, streaming or not. Each
 * must end with a clear error in its dialect's shape; afterwards the GPU is free, the LLM is
 * back in VRAM, no sd-cli is left running, and the simulated GPU saw no broken invariant.
 */

const figures = emptyFigures();
// A soak run (DIFFUGEN_SOAK) does more of everything: give each test as much more time.
vi.setConfig({ testTimeout: 30_000 * soakFactor });
let s: ReliabilityStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});
afterAll(() => recordFigures("sd-faults", figures));

interface SdFault {
  name: string;
  sdEnv: Record<string, string>;
  env?: Record<string, string>;
  /** The run error code the client must be told (undefined: the run succeeds). */
  code: string | undefined;
  /** Something the message must say, so the user knows what happened. */
  says?: RegExp;
  clients: readonly ClientName[];
}

const faults: SdFault[] = [
  {
    name: "crash with a CUDA error (SIGABRT) mid-sampling",
    sdEnv: { FAKE_SD_CRASH_AT_STEP: "2", FAKE_SD_CRASH_MODE: "abort" },
    code: "sd_failed",
    says: /CUDA error|SIGABRT|signal/i,
    clients: allClients,
  },
  {
    name: "failed compute (exit 1) mid-sampling",
    sdEnv: { FAKE_SD_CRASH_AT_STEP: "1", FAKE_SD_CRASH_MODE: "exit" },
    code: "sd_failed",
    says: /generate failed|compute failed|exit/i,
    clients: allClients,
  },
  {
    name: "out of VRAM when the UNet loads",
    sdEnv: { FAKE_SD_OOM: "1" },
    code: "out_of_memory",
    says: /memory|VRAM|cudaMalloc/i,
    clients: allClients,
  },
  {
    name: "hangs silently from the start (killed at GENERATION_TIMEOUT_S)",
    sdEnv: { FAKE_SD_HANG: "1" },
    env: { GENERATION_TIMEOUT_S: "1" },
    code: "timeout",
    says: /did not finish|time/i,
    clients: ["images", "seed-stream", "chat-stream"],
  },
  {
    name: "hangs after step 1 (killed at GENERATION_TIMEOUT_S)",
    sdEnv: { FAKE_SD_HANG_AT_STEP: "2" },
    env: { GENERATION_TIMEOUT_S: "1" },
    code: "timeout",
    says: /did not finish|time/i,
    clients: ["images-stream", "seed", "graph-stream"],
  },
  {
    name: "garbage on both streams (invalid UTF-8, NUL, ANSI, binary) but a good image",
    sdEnv: { FAKE_SD_GARBAGE: "1" },
    code: undefined,
    clients: allClients,
  },
];

function describeResult(r: ClientResult): string {
  return `${r.client}: ${r.status} ${r.kind} ${r.error ? `${r.error.code} ${r.error.message}` : ""}`.slice(0, 300);
}

describe("sd-cli faults end with a clear error, the GPU given back and the LLM reloaded", () => {
  for (const fault of faults) {
    it(fault.name, async () => {
      s = await startReliabilityStack({ env: { LOG_LEVEL: "silent", ...fault.env }, sdEnv: fault.sdEnv });
      const rounds = fault.code === "timeout" ? 1 : soakFactor;
      const results: ClientResult[] = [];
      for (let round = 0; round < rounds; round++) {
        // All at once: they queue for the one GPU, and each failure must hand it on cleanly.
        results.push(...(await Promise.all(fault.clients.map((client) => callClient(s!.url, client, { refine: false })))));
      }
      figures.requests += results.length;
      figures.faults += fault.code === undefined ? results.length : readSpawns(s.stack.gpuDir).length;

      for (const r of results) {
        if (fault.code === undefined) {
          expect(r.kind, describeResult(r)).toBe("image");
          continue;
        }
        expect(r.kind, describeResult(r)).toBe("error");
        expect(r.error?.shapeProblem, describeResult(r)).toBeUndefined();
        expect(r.error?.code, describeResult(r)).toBe(fault.code);
        if (fault.says) expect(r.error?.message, describeResult(r)).toMatch(fault.says);
        // Non-streaming answers carry the failure in the status too (the SDK throws on it).
        if (!r.client.endsWith("stream")) expect(r.status, describeResult(r)).toBeGreaterThanOrEqual(500);
      }
      // Every request drew (or tried to): one sd-cli each, none refused early.
      expect(readSpawns(s.stack.gpuDir)).toHaveLength(results.length);

      const quiet = await whenQuiet(s);
      figures.violations += quiet.violations.length;
      figures.orphans += quiet.orphans.length;
      expect(quiet.violations).toEqual([]);
      expect(quiet.orphans).toEqual([]);
      expect(quiet.gpu).not.toBe("diffusion");
      expect(quiet.llmState).toBe("resident");
      expect(quiet.listed).toContain(LLM);
      // A failed run leaves no half-written picture behind.
      if (fault.code !== undefined) expect(outputPngs(s.stack)).toEqual([]);
    });
  }
});
