import fs from "node:fs";
import type { Reporter, TestModule } from "vitest/node";

/**
 * Prints plain closing lines after vitest's own summary, so CI logs (and tools reading
 * them) get the counts in a fixed form:
 *
 *   Reliability: 612 requests, 74 faults injected, 0 violations, 0 orphans, 0 5xx on bad input, 0 sd-cli spawns for invalid requests, 0 stuck jobs
 *   Tests: N passed, N failed[, N skipped]
 *
 * The Reliability line appears when tests/reliability ran: its test files (in worker
 * processes) append their figures as JSON lines to the file vitest.config.ts names in
 * DIFFUGEN_RELIABILITY_FIGURES; this sums and removes it.
 */

const figuresEnv = "DIFFUGEN_RELIABILITY_FIGURES";

const figureNames = {
  requests: "requests",
  faults: "faults injected",
  violations: "violations",
  orphans: "orphans",
  badInput5xx: "5xx on bad input",
  invalidSpawns: "sd-cli spawns for invalid requests",
  stuckJobs: "stuck jobs",
} as const;

type FigureKey = keyof typeof figureNames;

export default class SummaryReporter implements Reporter {
  onInit(): void {
    // A file left by an earlier run in this same process (watch mode) is not this run's.
    const file = process.env[figuresEnv];
    if (file) fs.rmSync(file, { force: true });
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
        else skipped++;
      }
      // A file that failed to load has no tests but is a failure all the same.
      if (module.state() === "failed" && [...module.children.allTests()].length === 0) failed++;
    }
    const reliability = reliabilityLine();
    if (reliability) process.stdout.write(`\n${reliability}`);
    const tail = skipped > 0 ? `, ${skipped} skipped` : "";
    process.stdout.write(`\nTests: ${passed} passed, ${failed} failed${tail}\n`);
  }
}

/** The summed figures, or undefined when no reliability test recorded any. */
function reliabilityLine(): string | undefined {
  const file = process.env[figuresEnv];
  if (!file) return undefined;
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
  fs.rmSync(file, { force: true });
  const sums = Object.fromEntries(Object.keys(figureNames).map((k) => [k, 0])) as Record<FigureKey, number>;
  let lines = 0;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue; // a torn line cannot hide the others
    }
    lines++;
    for (const key of Object.keys(sums) as FigureKey[]) {
      const value = record[key];
      if (typeof value === "number" && Number.isFinite(value)) sums[key] += value;
    }
  }
  if (lines === 0) return undefined;
  const parts = (Object.keys(figureNames) as FigureKey[]).map((key) => `${sums[key]} ${figureNames[key]}`);
  return `Reliability: ${parts.join(", ")}\n`;
}
