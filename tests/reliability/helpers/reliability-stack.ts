import fs from "node:fs";
import type { JobRunner } from "../../../src/jobs/index.js";
import type { StartServerOptions } from "../../../src/server/index.js";
import { readViolations } from "../../fakes/fake-gpu.mjs";
import { aliveDoubles, type Stack } from "../../helpers/stack.js";
import { withTimeout } from "../../helpers/timing.js";
import { until } from "../../helpers/until.js";
import { startServerStack, type ServerStack } from "../../server/harness.js";

export { withTimeout };

/**
 * The real server (port 0) in front of the stack bootstrap builds (tests/helpers/stack.ts:
 * fake Ollama, sd-cli double, one simulated GPU), with its job runner in reach so a test
 * can see every job end. The double runs fast (a few ms a step) and every image is 64x64: what is tested is what
 * happens around sd-cli, not how long it takes.
 */

export const LLM = "qwen2.5:3b";

/** A fast sd-cli double: steps, tensor loads and decodes of a few ms. */
export const fastSd: Record<string, string> = {
  FAKE_SD_STEP_MS: "4",
  FAKE_SD_LOAD_MS: "4",
  FAKE_SD_DECODE_MS: "4",
  FAKE_SD_COND_MS: "2",
  FAKE_SD_PREVIEW_GAP_MS: "0",
};

/**
 * DIFFUGEN_SOAK=1 (or a factor, DIFFUGEN_SOAK=20) multiplies counts and rounds; unset, every
 * test runs its short version.
 */
export const soakFactor = (() => {
  const raw = process.env.DIFFUGEN_SOAK;
  if (raw === undefined || raw === "" || raw === "0") return 1;
  const n = Number(raw);
  return Number.isFinite(n) && n > 1 ? Math.floor(n) : 10;
})();

export interface ReliabilityStack extends ServerStack {
  runner: JobRunner;
}

/**
 * startServerStack with fast sd-cli steps. Its close ends any sd-cli double left alive too
 * (an orphan the assertions have reported already must not outlive the test).
 */
export async function startReliabilityStack(
  options: Parameters<typeof startServerStack>[0] & { server?: StartServerOptions } = {},
): Promise<ReliabilityStack> {
  const s = await startServerStack({ ...options, sdEnv: { ...fastSd, ...options.sdEnv } });
  return { ...s, runner: s.stack.runner };
}

/** sd-cli doubles of this stack still running. */
export function orphanPids(stack: Stack): number[] {
  return aliveDoubles(stack.gpuDir);
}

export interface Quiet {
  violations: { by: string; what: string }[];
  orphans: number[];
  llmState: string;
  gpu: string;
  listed: string[];
}

/**
 * Waits until every job has ended and the scheduler has settled (GPU idle, nobody
 * waiting, the LLM put back or the attempt over), then reports what is left: invariant
 * violations, sd-cli doubles still alive, where the LLM is. Throws when it does not get
 * there in time (a stuck job).
 */
export async function whenQuiet(s: ReliabilityStack, timeoutMs = 20_000): Promise<Quiet> {
  await until(`every job to end (${s.runner.activeJobs} still active)`, () => s.runner.activeJobs === 0, timeoutMs);
  await withTimeout(s.stack.deps.scheduler.whenSettled(), timeoutMs, "the GPU scheduler to settle");
  // A double that was just killed may take a moment to be gone from the process table.
  const deadline = Date.now() + 3_000;
  while (orphanPids(s.stack).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const state = s.stack.deps.scheduler.state();
  return {
    violations: readViolations(s.stack.gpuDir),
    orphans: orphanPids(s.stack),
    llmState: state.llm,
    gpu: state.gpu.kind,
    listed: s.stack.ollama.listed(),
  };
}

/** The PNG files in OUTPUT_DIR (previews excluded). */
export function outputPngs(stack: Stack): string[] {
  return fs.readdirSync(stack.outputDir).filter((f) => f.endsWith(".png") && !f.includes(".preview"));
}
