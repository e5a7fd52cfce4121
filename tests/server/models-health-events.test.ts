import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { readSpawns, readViolations } from "../fakes/fake-gpu.mjs";
import { parseSse, pngSize, postJson, startServerStack, type ServerStack } from "./harness.js";

let s: ServerStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

describe("GET /v1/models", () => {
  it("lists diffugen, diffugen:<model> per registry model and the image models (SDK models.list), then Ollama's", async () => {
    s = await startServerStack();
    const ids: string[] = [];
    for await (const model of s.client.models.list()) {
      expect(model).toMatchObject({ object: "model", owned_by: model.id === "qwen2.5:3b" ? "ollama" : "diffugen", created: expect.any(Number) });
      ids.push(model.id);
    }
    const names = s.stack.deps.registry.names();
    expect(ids).toEqual(["diffugen", ...names.map((n) => `diffugen:${n}`), ...names, "qwen2.5:3b"]);
    const raw = (await (await fetch(`${s.url}/v1/models`)).json()) as { object: string; data: { id: string; available: boolean }[] };
    expect(raw.object).toBe("list");
    expect(raw.data.find((m) => m.id === "sd15")?.available).toBe(true);
    expect(raw.data.find((m) => m.id === "diffugen:sdxl")?.available).toBe(false);
  });
});

describe("GET /health", () => {
  it("reports Ollama with the models it holds, sd-cli with its --version line, every model's files, the scheduler", async () => {
    s = await startServerStack();
    const res = await fetch(`${s.url}/health`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      ollama: { resident: { name: string; fullyOnGpu: boolean }[] };
      models: { name: string; available: boolean; files: { role: string; path: string; present: boolean }[] }[];
    };
    expect(body).toMatchObject({
      status: "ok",
      ok: true,
      ollama: { reachable: true, modelInstalled: true, resident: [{ name: "qwen2.5:3b", fullyOnGpu: true }] },
      sd: { found: true, version: "stable-diffusion.cpp version master-827-97d2990+, commit 97d29908" },
      scheduler: { gpu: { kind: "idle" }, queue: [] },
      jobs: { active: 0 },
    });
    expect(body.models.map((m) => m.name)).toEqual(s.stack.deps.registry.names());
    const sd15 = body.models.find((m) => m.name === "sd15")!;
    expect(sd15).toMatchObject({ available: true, files: [{ role: "model", present: true }] });
    expect(sd15.files[0]!.path).toMatch(/v1-5-pruned-emaonly\.safetensors$/);
    const flux = body.models.find((m) => m.name === "flux-schnell")!;
    expect(flux.available).toBe(false);
    expect(flux.files.length).toBeGreaterThan(1);
    expect(flux.files.every((f) => !f.present)).toBe(true);

    // --version ran once (cached), and was no generation: nothing on the simulated GPU.
    await fetch(`${s.url}/health`);
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);
    // It is /api/ps as it stands: after an unload, nothing is resident.
    await postJson(`${s.stack.ollama.url}/api/chat`, { model: "qwen2.5:3b", messages: [], keep_alive: 0 });
    const later = (await (await fetch(`${s.url}/health`)).json()) as { ollama: { resident: unknown[] } };
    expect(later.ollama.resident).toEqual([]);
  });

  it("is degraded when Ollama is down or sd-cli missing, and still answers 200", async () => {
    s = await startServerStack({ env: { SD_CPP_BIN: "no-such-sd-cli-binary" } });
    await s.stack.ollama.setFault({ kind: "down" });
    const res = await fetch(`${s.url}/health`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      status: "degraded",
      ok: false,
      ollama: { reachable: false, resident: null, residentError: expect.any(String) },
      sd: { found: false, path: null, version: null },
    });
  });

  it("names a broken sd-cli's --version failure", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-broken-sd-"));
    const bin = path.join(dir, "sd-cli");
    fs.writeFileSync(bin, "#!/bin/sh\necho 'error while loading shared libraries: libcudart.so.12' >&2\nexit 127\n", { mode: 0o755 });
    try {
      s = await startServerStack({ env: { SD_CPP_BIN: bin } });
      const body = (await (await fetch(`${s.url}/health`)).json()) as { sd: { found: boolean; version: string | null; versionError: string } };
      expect(body.sd).toMatchObject({ found: true, version: null });
      expect(body.sd.versionError).toContain("exit code 127");
      expect(body.sd.versionError).toContain("libcudart");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

type Sse = ReturnType<typeof parseSse>["messages"];
const dataOf = <T = Record<string, unknown>>(messages: Sse, event: string): T[] => messages.filter((m) => m.event === event).map((m) => JSON.parse(m.data) as T);

describe("POST /v1/graph/stream: the graph's own stream", () => {
  const request = { prompt: "a fox", width: 64, height: 64, steps: 6 };

  it("default modes updates + custom: each chunk as event: <mode>, untouched, then event: end", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_STEP_MS: "40" } });
    const res = await postJson(`${s.url}/v1/graph/stream`, { request });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const { messages } = parseSse(await res.text());
    expect(new Set(messages.map((m) => m.event))).toEqual(new Set(["updates", "custom", "end"]));
    expect(messages.at(-1)!.event).toBe("end");
    expect(messages.filter((m) => m.event === "end")).toHaveLength(1);

    // updates: LangGraph's {node: update}, one node each, in graph order.
    const updates = dataOf<Record<string, Record<string, unknown>>>(messages, "updates");
    expect(updates.map((u) => Object.keys(u))).toEqual([["refine"], ["unload"], ["diffuse"], ["reload"]]);
    expect(updates[0]!.refine).toMatchObject({ intent: "draw", refined: { prompt: "a fox, highly detailed" }, model: "sd15" });
    expect(updates[2]!.diffuse).toMatchObject({ images: [{ width: 64, height: 64 }] });

    // custom: the ProgressEvents as the nodes wrote them, previews with their PNG.
    const events = dataOf(messages, "custom");
    expect(events.map((e) => e.phase)).toContain("sampling");
    expect(events.some((e) => e.kind === "status" && (e.step as { current: number } | undefined)?.current === 6)).toBe(true);
    const previews = events.filter((e) => e.kind === "preview");
    expect(previews.length).toBeGreaterThan(0);
    for (const p of previews) expect(pngSize(Buffer.from(p.pngBase64 as string, "base64")).width).toBeGreaterThan(0);
    expect(events.at(-1)).toMatchObject({ phase: "complete" });

    const [end] = dataOf<{ jobId: string; outcome: { kind: string; images: unknown[] } }>(messages, "end");
    expect(end!.jobId).toMatch(/^job-/);
    expect(end!.outcome).toMatchObject({ kind: "images", images: [{ width: 64, height: 64 }] });
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });

  it("stream_mode / streamMode pick the modes: values is the whole state after each step", async () => {
    s = await startServerStack();
    const valuesOnly = parseSse(await (await postJson(`${s.url}/v1/graph/stream`, { request: { ...request, steps: 2 }, stream_mode: "values" })).text()).messages;
    expect(new Set(valuesOnly.map((m) => m.event))).toEqual(new Set(["values", "end"]));
    const states = dataOf<{ request: { prompt: string }; timings: Record<string, number>; images: unknown[] }>(valuesOnly, "values");
    expect(states[0]!.request.prompt).toBe("a fox");
    expect(Object.keys(states.at(-1)!.timings)).toEqual(["refine", "unload", "diffuse", "reload"]);
    expect(states.at(-1)!.images).toHaveLength(1);

    const chat = parseSse(
      await (
        await postJson(`${s.url}/v1/graph/stream`, {
          mode: "chat",
          request: { prompt: "now paint it darker", width: 64, height: 64, steps: 2 },
          messages: [{ role: "user", content: "draw a fox" }],
          previousPrompt: "a fox, highly detailed",
          streamMode: ["updates", "values", "updates"],
        })
      ).text(),
    ).messages;
    expect(new Set(chat.map((m) => m.event))).toEqual(new Set(["updates", "values", "end"]));
    expect(dataOf<{ mode: string; previousPrompt: string }>(chat, "values")[0]).toMatchObject({ mode: "chat", previousPrompt: "a fox, highly detailed" });
    expect(dataOf(chat, "updates").map((u) => Object.keys(u)[0])).toEqual(["refine", "unload", "diffuse", "reload"]);
  });

  it("400 before anything runs, naming the field as the client wrote it; 404 for an unknown model", async () => {
    s = await startServerStack();
    const cases: [unknown, string | null][] = [
      [{ request: { ...request, width: 65 } }, "request.width"],
      [{ request: { ...request, stepz: 4 } }, "request.stepz"],
      [{ request: { ...request, prompt: "" } }, "request.prompt"],
      [{ request: "a fox" }, "request"],
      [{ prompt: "a fox" }, "request"],
      [{ request, refine_prompt: false }, "refine_prompt"],
      [{ request, mode: "video" }, "mode"],
      [{ request, stream_mode: ["updates", "debug"] }, "stream_mode[1]"],
      [{ request, stream_mode: [] }, "stream_mode"],
      [{ request, stream_mode: "values", streamMode: "values" }, "stream_mode"],
      [{ request, messages: [{ role: "robot", content: "hi" }] }, "messages[0].role"],
      // A path on the server: only uploads through /v1/images/edits may set it.
      [{ request: { ...request, initImage: "/etc/passwd" } }, "request.initImage"],
    ];
    for (const [body, param] of cases) {
      const res = await postJson(`${s.url}/v1/graph/stream`, body);
      const answer = (await res.json()) as { error: { param: string | null; type: string } };
      expect({ body, status: res.status, param: answer.error.param }).toEqual({ body, status: 400, param });
      expect(answer.error.type).toBe("invalid_request_error");
    }
    const unknown = await postJson(`${s.url}/v1/graph/stream`, { request: { ...request, model: "midjourney" } });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: "model_not_found", param: "request.model" } });
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);
    expect(s.stack.ollama.stats.chat).toBe(0);
    expect(s.stack.ollama.stats.unload).toBe(0);
  });

  it("aliases on the same code: POST /v1/runs/stream, and GET /v1/events/stream with the inputs as query parameters", async () => {
    s = await startServerStack();
    const viaRuns = parseSse(await (await postJson(`${s.url}/v1/runs/stream`, { request: { ...request, steps: 2 }, stream_mode: ["updates"] })).text()).messages;
    expect(viaRuns.map((m) => m.event)).toEqual(["updates", "updates", "updates", "updates", "end"]);

    const res = await fetch(`${s.url}/v1/events/stream?prompt=a%20fox&width=64&height=64&steps=2&refinePrompt=false&stream_mode=custom,values`);
    const viaGet = parseSse(await res.text()).messages;
    expect(new Set(viaGet.map((m) => m.event))).toEqual(new Set(["custom", "values", "end"]));
    expect(dataOf(viaGet, "custom").some((e) => e.kind === "refined" && e.prompt === "a fox")).toBe(true);
    expect(dataOf<{ outcome: { kind: string } }>(viaGet, "end")[0]!.outcome.kind).toBe("images");

    for (const [query, param] of [
      ["prompt=a%20fox&width=65", "request.width"],
      ["prompt=a%20fox&stream_mode=debug", "stream_mode"],
      ["prompt=a%20fox&previews=1", "previews"],
    ] as const) {
      const bad = await fetch(`${s.url}/v1/events/stream?${query}`);
      expect(bad.status).toBe(400);
      expect(await bad.json()).toMatchObject({ error: { param } });
    }
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
