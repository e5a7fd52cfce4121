import { describe, expect, it } from "vitest";
import { GpuScheduler } from "../../src/gpu/index.js";
import { createLogger, gpuSchedulerLog } from "../../src/logging/index.js";
import { FakeLlmResidency } from "../unit/gpu/fake-llm-residency.js";

function collect() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level: "info", destination: { write: (chunk: string) => void lines.push(JSON.parse(chunk) as Record<string, unknown>) } });
  return { logger, lines };
}

describe("gpuSchedulerLog", () => {
  it("logs each swap (LLM out, LLM back) with its duration and job id; grants only at debug; failures as warnings", async () => {
    const { logger, lines } = collect();
    const llm = new FakeLlmResidency();
    const scheduler = new GpuScheduler({ llm, log: gpuSchedulerLog(logger) });

    const lease = await scheduler.acquire("diffusion", { jobId: "job-1" });
    await lease.release();
    await scheduler.whenSettled();
    expect(lines.map((line) => [line.level, line.msg])).toEqual([
      ["info", "unloading LLM"],
      ["info", "LLM unloaded"],
      ["info", "reloading LLM"],
      ["info", "LLM reloaded"],
    ]);
    expect(lines[0]).toMatchObject({ event: "gpu", component: "gpu", job_id: "job-1" });
    expect(lines[1]).toMatchObject({ durationMs: expect.any(Number) });
    expect(lines[3]).toMatchObject({ durationMs: expect.any(Number), model: "qwen2.5:3b" });

    lines.length = 0;
    llm.failNextUnloads = 1;
    await expect(scheduler.acquire("diffusion", { jobId: "job-2" })).rejects.toThrow();
    await scheduler.whenSettled();
    expect(lines).toContainEqual(expect.objectContaining({ level: "warn", msg: "LLM unload failed", job_id: "job-2", error: expect.any(String) }));
    await scheduler.close();
  });
});
