import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    // Tests spawn real processes (the sd-cli double) and real HTTP servers: keep
    // them isolated per file, and give process-heavy tests room on a 2-core box.
    pool: "forks",
    reporters: ["default", "./tests/summary-reporter.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
