import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/index.js";
import { OllamaProbe } from "../../src/llm/index.js";
import { readViolations } from "../fakes/fake-gpu.mjs";
import { LLM_MODEL, startStack, type Stack } from "../helpers/stack.js";

/**
 * LLM_RESTORE through the real bootstrap, graph and GPU scheduler against the doubles: what
 * Ollama holds after a burst of images is what it held before it (`previous`), or nothing
 * (`none`), and the LLM side keeps working either way.
 */

const OTHER_MODEL = "llama3.2:1b";
const tiny = { width: 64, height: 64, steps: 3 };

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

/** Runs one image job to the end, the LLM side settled after it. */
async function drawOnce(s: Stack, prompt = "a red fox"): Promise<void> {
  const job = s.runner.start(s.runner.prepare({ mode: "image", request: { prompt, ...tiny } }));
  const outcome = await job.outcome;
  expect(outcome.kind).toBe("images");
  await job.finished;
  await s.deps.scheduler.whenSettled();
}

/** /api/ps: each model with its context length. */
async function resident(s: Stack): Promise<Record<string, number | undefined>> {
  const models = await new OllamaProbe(s.config.llm).listResident();
  return Object.fromEntries(models.map((m) => [m.name, m.contextLength]));
}

const reloads = (s: Stack) => s.gpuLog.filter((l) => l.message === "reloading LLM").length;

describe("LLM_RESTORE, end to end", () => {
  it("previous (default): a chat client's model resident before an image job is resident again after it, with its context", async () => {
    stack = await startStack({ ollama: { installed: [LLM_MODEL, OTHER_MODEL] } });
    // Another client (OpenWebUI, say) left its model loaded with a 2048 context and 5 min to live.
    stack.ollama.preload(OTHER_MODEL, { numCtx: 2048, keepAliveMs: 5 * 60_000 });
    expect(await resident(stack)).toEqual({ [LLM_MODEL]: 4096, [OTHER_MODEL]: 2048 });

    await drawOnce(stack);
    expect(await resident(stack)).toEqual({ [LLM_MODEL]: 4096, [OTHER_MODEL]: 2048 });
    expect(reloads(stack)).toBe(1);
    // The next burst unloads the LLM it loaded back without waiting for /api/ps first: both still come back.
    await drawOnce(stack, "a blue fox");
    expect(await resident(stack)).toEqual({ [LLM_MODEL]: 4096, [OTHER_MODEL]: 2048 });
    expect(reloads(stack)).toBe(2);
    expect(readViolations(stack.gpuDir)).toEqual([]);
  });

  it("none: nothing comes back, and the next LLM call is served at once, its model loaded on demand", async () => {
    stack = await startStack({ env: { LLM_RESTORE: "none" }, ollama: { installed: [LLM_MODEL, OTHER_MODEL] } });
    await drawOnce(stack);
    expect(stack.ollama.listed()).toEqual([]);
    const loadsAfterBurst = stack.ollama.stats.load;

    // The next LLM lease: granted without a reload (nothing pretends the LLM must come back first).
    const lease = await stack.deps.scheduler.acquire("llm", { jobId: "chat-1" });
    await lease.release();
    await stack.deps.scheduler.whenSettled();
    expect(stack.ollama.stats.load).toBe(loadsAfterBurst);
    expect(reloads(stack)).toBe(1);

    // A second image job: its refinement loads the LLM on demand, the unload takes it out, and
    // after the job VRAM is free again.
    await drawOnce(stack, "a blue fox");
    expect(stack.ollama.listed()).toEqual([]);
    expect(stack.gpuLog.filter((l) => l.message === "LLM unloaded").at(-1)?.fields.models).toEqual([LLM_MODEL]);
    expect(readViolations(stack.gpuDir)).toEqual([]);
  });

  it("a bad LLM_RESTORE stops the service, naming the variable and its values", () => {
    let error: unknown;
    try {
      loadConfig({ LLM_RESTORE: "last" });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain("LLM_RESTORE: expected previous");
    expect((error as ConfigError).message).toMatch(/default \(LLM_MODEL only\) or none \(leave VRAM free\), got 'last'/);
    expect(loadConfig({}).llm.restore).toBe("previous");
    expect(loadConfig({ LLM_RESTORE: "" }).llm.restore).toBe("previous");
  });
});
