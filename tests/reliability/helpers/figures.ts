import fs from "node:fs";

/**
 * The suite's figures, for the closing "Reliability: ..." line the summary reporter prints.
 * Test files run in worker processes, the reporter in vitest's main process: each file
 * appends one JSON line per test to the file vitest.config.ts names in
 * DIFFUGEN_RELIABILITY_FIGURES (one small append is atomic), and the reporter sums them.
 */

export interface Figures {
  /** HTTP requests sent. */
  requests: number;
  /** Faults injected (sd-cli failure modes, Ollama faults, client disconnects). */
  faults: number;
  /** Invariant violations the simulated GPU recorded. */
  violations: number;
  /** sd-cli processes left alive after their job ended. */
  orphans: number;
  /** 5xx answers to requests that were malformed or hostile. */
  badInput5xx: number;
  /** sd-cli starts caused by requests that should have been refused. */
  invalidSpawns: number;
  /** Jobs that did not end in time. */
  stuckJobs: number;
}

export const figuresEnv = "DIFFUGEN_RELIABILITY_FIGURES";

export function emptyFigures(): Figures {
  return { requests: 0, faults: 0, violations: 0, orphans: 0, badInput5xx: 0, invalidSpawns: 0, stuckJobs: 0 };
}

/** Adds this test's figures to the run's file (a no-op when vitest did not name one). */
export function recordFigures(suite: string, figures: Partial<Figures>): void {
  const file = process.env[figuresEnv];
  if (!file) return;
  fs.appendFileSync(file, `${JSON.stringify({ suite, ...emptyFigures(), ...figures })}\n`);
}
