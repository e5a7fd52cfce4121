import os from "node:os";
import path from "node:path";
import { defineConfig } from "vitest/config";

// Where the reliability suite (tests/reliability) leaves its figures for the summary
// reporter: one file per vitest run, named after this (main) process. Test files run in
// worker processes, which inherit it through `env`.
process.env.DIFFUGEN_RELIABILITY_FIGURES ??= path.join(os.tmpdir(), `diffugen-reliability-${process.pid}.jsonl`);

export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    // Tests spawn real processes (the sd-cli double) and real HTTP servers: keep
    // them isolated per file, and give process-heavy tests room on a 2-core box.
    pool: "forks",
    reporters: ["default", "./tests/summary-reporter.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    env: { DIFFUGEN_RELIABILITY_FIGURES: process.env.DIFFUGEN_RELIABILITY_FIGURES },
  },
});
