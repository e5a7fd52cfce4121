import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { readSpawns } from "../fakes/fake-gpu.mjs";
import type { FakeOllamaFault, FaultScope } from "../fakes/ollama-server.js";
import { callClient, type ClientName, type ClientResult } from "./helpers/clients.js";
import { emptyFigures, recordFigures } from "./helpers/figures.js";
import { until } from "../helpers/until.js";
import { LLM, soakFactor, startReliabilityStack, whenQuiet, type ReliabilityStack } from "./helpers/reliability-stack.js";

/**
 * Ollama misbehaving every way REFERENCE.md §2 says it can: down, slow, the model missing
 * (404), an unload that never completes, a connection reset or an error in the middle of a
 * stream, nonsense instead of JSON. Refinement is a nicety (src/llm/prompt-refiner.ts): when
 * the LLM cannot help, the picture is still made from the user's own words and the client
 * is told so; when the LLM cannot be moved out of VRAM, nothing is drawn and the client gets
 * a clear error. Either way the GPU is given back, no sd-cli is left, the invariant holds,
 * and the LLM is resident again, or, when Ollama itself is gone or lacks the model, it is
 * reloaded by the first request that needs it once Ollama is back (not before: nothing
 * polls Ollama in the background).
 */

const figures = emptyFigures();
// A soak run (DIFFUGEN_SOAK) does more of everything: give each test as much more time.
vi.setConfig({ testTimeout: 30_000 * soakFactor });
let s: ReliabilityStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});
afterAll(() => recordFigures("ollama-faults", figures));

const prompt = "a red fox in the snow";
const drawingClients: readonly ClientName[] = ["images", "images-stream", "seed", "seed-stream", "chat", "chat-stream", "graph-stream"];

function describeResult(r: ClientResult): string {
  return `${r.client}: ${r.status} ${r.kind} ${r.error ? `${r.error.code} ${r.error.message}` : ""} warnings=${JSON.stringify(r.warnings)}`.slice(0, 400);
}

/** The client got the picture and can tell its own words were used, where its dialect can say so. */
function expectDrawnFromOwnWords(r: ClientResult, why: RegExp): void {
  expect(r.kind, describeResult(r)).toBe("image");
  switch (r.client) {
    case "images":
      // OpenAI's answer has no warnings: revised_prompt shows the words used.
      expect(r.promptShown, describeResult(r)).toBe(prompt);
      break;
    case "chat":
      expect(r.promptShown, describeResult(r)).toMatch(/as you wrote it/i);
      break;
    default:
      expect(r.warnings.join("\n"), describeResult(r)).toMatch(why);
  }
}

async function runAll(stack: ReliabilityStack, clients: readonly ClientName[]): Promise<ClientResult[]> {
  const results = await Promise.all(clients.map((client) => callClient(stack.url, client, { prompt })));
  figures.requests += results.length;
  figures.faults += results.length;
  return results;
}

/**
 * `resident`: reloaded by the scheduler; `failed`: the reload could not happen; `untouched`:
 * never moved out (the scheduler's "unknown"), and Ollama holds it.
 */
async function expectQuiet(stack: ReliabilityStack, llm: "resident" | "failed" | "untouched") {
  const quiet = await whenQuiet(stack);
  figures.violations += quiet.violations.length;
  figures.orphans += quiet.orphans.length;
  expect(quiet.violations).toEqual([]);
  expect(quiet.orphans).toEqual([]);
  expect(quiet.gpu).toBe("idle");
  expect(quiet.llmState).toBe(llm === "untouched" ? "unknown" : llm);
  if (llm !== "failed") expect(quiet.listed).toContain(LLM);
  return quiet;
}

/** Once Ollama is back, the first request that needs the LLM reloads it (and is answered by it). */
async function expectReloadedOnNextChat(stack: ReliabilityStack, llm: "resident" | "untouched" = "resident") {
  const reply = await callClientMessage(stack, "hello there");
  expect(reply).toMatch(/You said: hello there/);
  await expectQuiet(stack, llm);
}

async function callClientMessage(stack: ReliabilityStack, message: string): Promise<string> {
  figures.requests += 1;
  const res = await fetch(`${stack.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model: "diffugen", messages: [{ role: "user", content: message }] }),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { choices: { message: { content: string } }[] };
  return body.choices[0]!.message.content;
}

interface RefineFault {
  name: string;
  fault: FakeOllamaFault;
  scope?: FaultScope;
  env?: Record<string, string>;
  /** What the client is told about why its own words were used. */
  why: RegExp;
  /** The fault keeps the LLM from coming back until it is cleared. */
  blocksReload?: boolean;
}

const refineFaults: RefineFault[] = [
  { name: "Ollama down (connection refused)", fault: { kind: "down" }, why: /not reachable/i, blocksReload: true },
  {
    name: "the LLM not installed (404 on chat and load)",
    fault: { kind: "status", status: 404, error: `model '${LLM}' not found` },
    scope: { on: ["chat", "load"] },
    why: /not installed/i,
    blocksReload: true,
  },
  { name: "Ollama answers 500", fault: { kind: "status", status: 500, error: "llama runner process has terminated" }, why: /HTTP 500|skipped/i },
  { name: "connection reset mid-stream", fault: { kind: "reset-mid-stream" }, why: /skipped/i },
  { name: "an error line mid-stream", fault: { kind: "error-mid-stream" }, why: /skipped/i },
  { name: "nonsense instead of JSON", fault: { kind: "invalid-json" }, why: /not valid JSON|skipped/i },
  { name: "never answers (REFINE_TIMEOUT_S)", fault: { kind: "hang" }, env: { REFINE_TIMEOUT_S: "0.3" }, why: /did not answer|skipped/i },
];

describe("Ollama faults: the picture from the user's own words, the GPU given back, the LLM back", () => {
  for (const f of refineFaults) {
    it(f.name, async () => {
      s = await startReliabilityStack({ env: { LOG_LEVEL: "silent", ...f.env } });
      await s.stack.ollama.setFault(f.fault, f.scope);
      for (let round = 0; round < soakFactor; round++) {
        const results = await runAll(s, drawingClients);
        for (const r of results) expectDrawnFromOwnWords(r, f.why);
      }
      expect(readSpawns(s.stack.gpuDir)).toHaveLength(drawingClients.length * soakFactor);

      if (f.blocksReload) {
        // Ollama cannot take the LLM back now: the GPU is free and the scheduler knows the
        // reload failed; the next LLM request tries again.
        await expectQuiet(s, "failed");
        expect(s.stack.ollama.listed()).toEqual([]);
        await s.stack.ollama.setFault(null);
        await expectReloadedOnNextChat(s);
      } else {
        await expectQuiet(s, "resident");
      }
    });
  }

  it("Ollama slow to answer and to load: refinement gives up at REFINE_TIMEOUT_S, the reload just takes longer", async () => {
    s = await startReliabilityStack({ env: { LOG_LEVEL: "silent", REFINE_TIMEOUT_S: "0.3" }, ollama: { chatDelayMs: 3_000, loadMs: 400 } });
    const results = await runAll(s, drawingClients);
    for (const r of results) expectDrawnFromOwnWords(r, /did not answer|skipped/i);
    await expectQuiet(s, "resident");
  });

  it("Ollama down, a chat message that is not a drawing: a reply that says why", async () => {
    s = await startReliabilityStack({ env: { LOG_LEVEL: "silent" } });
    await s.stack.ollama.setFault({ kind: "down" });
    figures.faults += 1;
    const reply = await callClientMessage(s, "what is the capital of France?");
    expect(reply).toMatch(/can't answer right now: Ollama is not reachable/);
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);
    await s.stack.ollama.setFault(null);
    // Never taken out by us: Ollama loads it for the first chat once it is back.
    await expectReloadedOnNextChat(s, "untouched");
  });

  it("Ollama stops while sd-cli runs: the picture is delivered; the LLM comes back with Ollama", async () => {
    s = await startReliabilityStack({ env: { LOG_LEVEL: "silent" }, sdEnv: { FAKE_SD_STEP_MS: "150" } });
    const pending = Promise.all(
      (["images", "seed-stream", "graph-stream"] as const).map((client) => callClient(s!.url, client, { prompt, refine: false, extra: { steps: 4 } })),
    );
    await until("sd-cli to start", () => readSpawns(s!.stack.gpuDir).length > 0);
    await s.stack.ollama.setFault({ kind: "down" });
    const results = await pending;
    figures.requests += results.length;
    figures.faults += 1;
    for (const r of results) expect(r.kind, describeResult(r)).toBe("image");
    // The graph stream lasts until the reload: it says the LLM could not come back.
    expect(results[2]!.warnings.join("\n")).toMatch(/not reachable|could not be reloaded/i);
    await expectQuiet(s, "failed");
    await s.stack.ollama.setFault(null);
    await expectReloadedOnNextChat(s);
  });
});

describe("an unload that never completes: nothing is drawn, the client is told, the LLM stays", () => {
  it("every dialect gets unload_timeout (503, retryable), no sd-cli starts, the LLM is resident after", async () => {
    s = await startReliabilityStack({ env: { LOG_LEVEL: "silent", UNLOAD_TIMEOUT_S: "0.4" }, ollama: { unloadNeverCompletes: true } });
    const clients: ClientName[] = ["images", "seed-stream", "chat-stream", "graph-stream"];
    const results = await Promise.all(clients.map((client) => callClient(s!.url, client, { prompt, refine: false })));
    figures.requests += results.length;
    figures.faults += results.length;
    for (const r of results) {
      expect(r.kind, describeResult(r)).toBe("error");
      expect(r.error?.shapeProblem, describeResult(r)).toBeUndefined();
      expect(r.error?.code, describeResult(r)).toBe("unload_timeout");
      expect(r.error?.message, describeResult(r)).toMatch(new RegExp(LLM.replace(/[.]/g, "\\.")));
      if (r.client === "images") expect(r.status).toBe(503);
    }
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);
    await expectQuiet(s, "resident");

    // Once Ollama unloads again, drawing works again.
    s.stack.ollama.configure({ unloadNeverCompletes: false });
    const after = await callClient(s.url, "images", { prompt, refine: false });
    figures.requests += 1;
    expect(after.kind, describeResult(after)).toBe("image");
    await expectQuiet(s, "resident");
  });

  it("a failed unload call (500 once) is retried: the picture is made", async () => {
    s = await startReliabilityStack({ env: { LOG_LEVEL: "silent" } });
    await s.stack.ollama.setFault({ kind: "status", status: 500, error: "server busy" }, { on: ["unload"], times: 1 });
    const r = await callClient(s.url, "images", { prompt, refine: false });
    figures.requests += 1;
    figures.faults += 1;
    expect(r.kind, describeResult(r)).toBe("image");
    await expectQuiet(s, "resident");
  });
});
