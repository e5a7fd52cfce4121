import { afterEach, describe, expect, it } from "vitest";
import { parseSse, postJson, startServerStack, type ServerStack } from "./harness.js";

let s: ServerStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

describe("GET /v1/models", () => {
  it("lists diffugen, diffugen:<model> per registry model and the image models (SDK models.list)", async () => {
    s = await startServerStack();
    const ids: string[] = [];
    for await (const model of s.client.models.list()) {
      expect(model).toMatchObject({ object: "model", owned_by: "diffugen", created: expect.any(Number) });
      ids.push(model.id);
    }
    const names = s.stack.deps.registry.names();
    expect(ids).toEqual(["diffugen", ...names.map((n) => `diffugen:${n}`), ...names]);
    const raw = (await (await fetch(`${s.url}/v1/models`)).json()) as { object: string; data: { id: string; available: boolean }[] };
    expect(raw.object).toBe("list");
    expect(raw.data.find((m) => m.id === "sd15")?.available).toBe(true);
    expect(raw.data.find((m) => m.id === "diffugen:sdxl")?.available).toBe(false);
  });
});

describe("GET /health", () => {
  it("reports Ollama, sd-cli and the scheduler", async () => {
    s = await startServerStack();
    const res = await fetch(`${s.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      status: "ok",
      ok: true,
      ollama: { reachable: true, modelInstalled: true },
      sd: { found: true },
      scheduler: { gpu: { kind: "idle" }, queue: [] },
      jobs: { active: 0 },
    });
  });

  it("is degraded when Ollama is down or sd-cli missing, and still answers 200", async () => {
    s = await startServerStack({ env: { SD_CPP_BIN: "no-such-sd-cli-binary" } });
    await s.stack.ollama.setFault({ kind: "down" });
    const body = (await (await fetch(`${s.url}/health`)).json()) as Record<string, unknown>;
    expect(body).toMatchObject({ status: "degraded", ok: false, ollama: { reachable: false }, sd: { found: false, path: null } });
  });
});

describe("the raw event stream for debuggers", () => {
  it("POST /v1/runs/stream: every ProgressEvent as data, previews without their PNG, node updates, the end state", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_STEP_MS: "40" } });
    const res = await postJson(`${s.url}/v1/runs/stream`, { request: { prompt: "a fox", width: 64, height: 64, steps: 6 } });
    const { messages } = parseSse(await res.text());
    const events = messages.filter((m) => m.event === "progress").map((m) => JSON.parse(m.data) as Record<string, unknown>);
    expect(events.map((e) => e.phase)).toContain("sampling");
    expect(events.at(-1)).toMatchObject({ phase: "complete" });
    for (const e of events.filter((e) => e.kind === "preview")) {
      expect(e.pngBase64).toBeUndefined();
      expect(e.pngBytes).toBeGreaterThan(0);
    }
    expect(messages.filter((m) => m.event === "node").map((m) => (JSON.parse(m.data) as { node: string }).node)).toEqual(["refine", "unload", "diffuse", "reload"]);
    expect(messages.some((m) => m.event === "outcome")).toBe(true);
    const end = JSON.parse(messages.at(-1)!.data) as { outcome: { kind: string }; state: { timings: Record<string, number> } };
    expect(messages.at(-1)!.event).toBe("end");
    expect(end.outcome.kind).toBe("images");
    expect(Object.keys(end.state.timings)).toEqual(["refine", "unload", "diffuse", "reload"]);
  });

  it("GET /v1/events/stream takes the request as query parameters, previews included when asked", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_STEP_MS: "40" } });
    const res = await fetch(`${s.url}/v1/events/stream?prompt=a%20fox&width=64&height=64&steps=6&refine=false&previews=1`);
    const { messages } = parseSse(await res.text());
    const events = messages.filter((m) => m.event === "progress").map((m) => JSON.parse(m.data) as Record<string, unknown>);
    expect(events.some((e) => e.kind === "refined" && e.prompt === "a fox")).toBe(true);
    for (const e of events.filter((e) => e.kind === "preview")) expect(typeof e.pngBase64).toBe("string");
    const bad = await fetch(`${s.url}/v1/events/stream?prompt=a%20fox&width=65`);
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { param: "width" } });
  });
});

describe("SSE heartbeat", () => {
  it("sends a comment line while a stream is quiet", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_STEP_MS: "150" }, server: { heartbeatMs: 50 } });
    const res = await postJson(`${s.url}/generate/stream`, { prompt: "a fox", width: 64, height: 64, steps: 4 });
    const { comments, messages } = parseSse(await res.text());
    expect(comments.length).toBeGreaterThan(0);
    expect(comments.every((c) => c === ": heartbeat")).toBe(true);
    expect(messages.at(-1)!.event).toBe("done");
  });
});
