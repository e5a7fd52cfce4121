import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logging/index.js";
import { LLM_MODEL, startStack, type ServedStack } from "../helpers/stack.js";
import { drawImage, postJson, readNdjson, sdCliRunning } from "./ollama-helpers.js";

/**
 * What the gateway tells an operator: /metrics counts its calls by Ollama route, kind,
 * model (gated calls only, and only models Ollama knows) and status, and how long gated
 * calls waited for the GPU; the log has one line per gated call with its wait.
 */

let stack: ServedStack;
const lines: Record<string, unknown>[] = [];

beforeAll(async () => {
  const logger = createLogger({ level: "info", destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } });
  stack = await startStack({ server: { logger }, sdEnv: { FAKE_SD_STEP_MS: "60" } });
});
afterAll(async () => {
  await stack?.close();
});

const metrics = async () => (await fetch(`${stack.url}/metrics`)).text();
const gatewayLines = () => lines.filter((l) => l.component === "gateway" && l.event === "gateway_call");

describe("gateway metrics and logs", () => {
  it("a gated call that waited for diffusion: counted with its model, its wait in the histogram and in its log line", async () => {
    const image = drawImage(stack.url, 4);
    await sdCliRunning(stack);
    const read = await readNdjson(await postJson(`${stack.url}/ollama/api/chat`, { model: LLM_MODEL, messages: [{ role: "user", content: "hi" }] }));
    expect(read.status).toBe(200);
    expect(await image).toBe(200);

    const text = await metrics();
    expect(text).toContain(`diffugen_gateway_requests_total{route="/api/chat",kind="gated",model="${LLM_MODEL}",status="200"} 1`);
    expect(text).toMatch(/^diffugen_gateway_gpu_wait_seconds_count\{route="\/api\/chat"\} 1$/m);
    // It waited at least for the rest of sd-cli's run: not in the first bucket.
    expect(text).toMatch(/^diffugen_gateway_gpu_wait_seconds_bucket\{le="0.001",route="\/api\/chat"\} 0$/m);

    const [line] = gatewayLines();
    expect(line).toMatchObject({ level: "info", route: "/api/chat", model: LLM_MODEL, status: 200, outcome: "completed" });
    expect(line!.job_id).toMatch(/^ollama-/);
    expect(line!.wait_ms as number).toBeGreaterThan(50);
    expect(line!.duration_ms as number).toBeGreaterThanOrEqual(line!.wait_ms as number);
  });

  it("management and refused calls are counted without a model; unknown model names never become labels", async () => {
    await fetch(`${stack.url}/ollama/api/tags`);
    await postJson(`${stack.url}/ollama/api/chat`, { messages: [] });
    for (let i = 0; i < 5; i++) await postJson(`${stack.url}/ollama/api/chat`, { model: `made-up-${i}`, messages: [{ role: "user", content: "hi" }] });
    await fetch(`${stack.url}/ollama/api/nope`);
    const text = await metrics();
    expect(text).toContain('diffugen_gateway_requests_total{route="/api/tags",kind="management",model="",status="200"} 1');
    expect(text).toContain('diffugen_gateway_requests_total{route="/api/chat",kind="refused",model="",status="400"} 1');
    expect(text).toContain('diffugen_gateway_requests_total{route="/api/chat",kind="gated",model="(other)",status="404"} 5');
    expect(text).toContain('diffugen_gateway_requests_total{route="(unknown)",kind="refused",model="",status="404"} 1');
    expect(text).not.toContain("made-up-");
    expect(text).toMatch(/^diffugen_gateway_llm_leases 0$/m);
    // Each gated call, refused by Ollama or not, left its one line.
    expect(gatewayLines()).toHaveLength(6);
  });
});
