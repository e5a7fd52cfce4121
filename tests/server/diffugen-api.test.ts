import { afterEach, describe, expect, it } from "vitest";
import { readSpawns } from "../fakes/fake-gpu.mjs";
import { parseSse, pngSize, postJson, startServerStack, type ServerStack } from "./harness.js";

let s: ServerStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

const tiny = { width: 64, height: 64, steps: 3 };
const seedPhases = ["initializing", "loading_model", "preparing", "generating", "post_processing", "complete"];

describe("the original DiffuGen API", () => {
  it("POST /generate answers {success, image_path, image_url, markdown_response, model, prompt, parameters}", async () => {
    s = await startServerStack();
    const res = await postJson(`${s.url}/generate`, { prompt: "a red fox", ...tiny, cfg_scale: 6, seed: 7, negative_prompt: null, sampling_method: "euler" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown> & { parameters: Record<string, unknown> };
    expect(body).toMatchObject({ success: true, error: null, model: "sd15", prompt: "a red fox, highly detailed", original_prompt: "a red fox" });
    expect(body.parameters).toMatchObject({ width: 64, height: 64, steps: 3, cfg_scale: 6, seed: 7, sampling_method: "euler" });
    expect(body.image_url).toMatch(new RegExp(`^${s.url}/images/[^/]+\\.png$`));
    expect(body.markdown_response).toContain(`](${body.image_url as string})`);
    expect(body.markdown_response).toContain("**Generation Details:**");
    const fetched = await fetch(body.image_url as string);
    expect(fetched.headers.get("content-type")).toBe("image/png");
    expect(pngSize(Buffer.from(await fetched.arrayBuffer()))).toEqual({ width: 64, height: 64 });
    expect(body.image_path).toBe(readSpawns(s.stack.gpuDir)[0]!.argv[readSpawns(s.stack.gpuDir)[0]!.argv.indexOf("-o") + 1]);
  });

  it("POST /generate/stream: progress events in their phases and bands, read from sd.cpp, then done with the result", async () => {
    s = await startServerStack();
    const res = await postJson(`${s.url}/generate/stream`, { prompt: "a red fox", ...tiny });
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const { messages } = parseSse(await res.text());
    const progress = messages.filter((m) => m.event === "progress").map((m) => JSON.parse(m.data) as Record<string, unknown>);
    for (const p of progress) {
      expect(Object.keys(p).sort()).toEqual(["eta_seconds", "message", "phase", "progress", "step", "timestamp", "total_steps"]);
      expect(seedPhases).toContain(p.phase);
    }
    const values = progress.map((p) => p.progress as number);
    expect(values).toEqual([...values].sort((a, b) => a - b));
    const phases = [...new Set(progress.map((p) => p.phase))];
    expect(phases).toEqual(phases.slice().sort((a, b) => seedPhases.indexOf(a as string) - seedPhases.indexOf(b as string)));
    expect(phases).toContain("generating");
    const steps = progress.filter((p) => p.phase === "generating" && p.step !== null);
    expect(steps.map((p) => p.step)).toEqual([1, 2, 3]);
    expect(steps.every((p) => p.total_steps === 3)).toBe(true);
    // Step 1's time includes the lazy UNet load (sd.cpp times it from the sampling start): no ETA from it.
    expect(steps.map((p) => typeof p.eta_seconds)).toEqual(["object", "number", "number"]);
    for (const p of progress.filter((p) => p.phase === "generating")) expect(p.progress).toBeGreaterThanOrEqual(20);
    expect(progress.at(-1)).toMatchObject({ phase: "complete", progress: 100 });
    const done = messages.at(-1)!;
    expect(done.event).toBe("done");
    expect(JSON.parse(done.data)).toMatchObject({ done: true, success: true, model: "sd15" });
    // Issue 13 #13: one line per message, and every event its own id (the last two included).
    const lines = progress.map((p) => p.message);
    expect(new Set(lines).size).toBe(lines.length);
    const ids = messages.map((m) => Number(m.id));
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.at(-2)).toBeLessThan(ids.at(-1)!);
  });

  it("a client that lost the stream right after the complete line resumes on /v1/jobs/<id>/events and gets the end", async () => {
    s = await startServerStack();
    const res = await postJson(`${s.url}/generate/stream`, { prompt: "a red fox", ...tiny });
    const jobId = res.headers.get("x-diffugen-job-id");
    expect(jobId).toBeTruthy();
    const { messages } = parseSse(await res.text());
    const complete = messages.at(-2)!;
    expect(complete.event).toBe("progress");
    expect(JSON.parse(complete.data)).toMatchObject({ phase: "complete" });
    const resumed = await fetch(`${s.url}/v1/jobs/${jobId}/events`, { headers: { "Last-Event-ID": complete.id! }, signal: AbortSignal.timeout(10_000) });
    const replay = parseSse(await resumed.text()).messages;
    expect(replay.map((m) => m.event)).toEqual(["end"]);
    expect(replay[0]!.id).toBe(messages.at(-1)!.id);
  });

  it("/generate/stable and /generate/flux keep to their family", async () => {
    s = await startServerStack();
    const wrong = await postJson(`${s.url}/generate/flux`, { prompt: "a fox", model: "sd15" });
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toMatchObject({ success: false, error: expect.stringContaining("/generate/stable") });
    // flux-schnell is the default flux model; its weights are not installed here.
    const flux = await postJson(`${s.url}/generate/flux`, { prompt: "a fox" });
    expect(flux.status).toBe(503);
    expect(await flux.json()).toMatchObject({ success: false, code: "model_files_missing", error: expect.stringContaining("flux1-schnell") });
    const stable = await postJson(`${s.url}/generate/stable`, { prompt: "a fox", ...tiny, refine: false });
    expect(await stable.json()).toMatchObject({ success: true, model: "sd15", prompt: "a fox" });
  });

  it("errors keep {success:false, error}; stream errors are event: error", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_CRASH_AT_STEP: "1", FAKE_SD_CRASH_MODE: "exit" } });
    const bad = await postJson(`${s.url}/generate`, { prompt: "a fox", width: 10 });
    expect(bad.status).toBe(400);
    expect(bad.headers.get("x-should-retry")).toBe("false");
    expect(await bad.json()).toMatchObject({ success: false, error: expect.stringContaining("width") });
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);

    const res = await postJson(`${s.url}/generate/stream`, { prompt: "a fox", ...tiny });
    const { messages } = parseSse(await res.text());
    const last = messages.at(-1)!;
    expect(last.event).toBe("error");
    expect(JSON.parse(last.data)).toMatchObject({ phase: "error", code: "sd_failed", error: expect.any(String) });
    expect(messages.some((m) => m.event === "done")).toBe(false);

    const failed = await postJson(`${s.url}/generate`, { prompt: "a fox", ...tiny });
    expect(failed.status).toBe(500);
    expect(await failed.json()).toMatchObject({ success: false, code: "sd_failed" });
  });

  it("POST /v1/images/generations/stream answers errors in OpenAI's shape, before the stream and inside it", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_CRASH_AT_STEP: "1", FAKE_SD_CRASH_MODE: "exit" } });
    const bad = await postJson(`${s.url}/v1/images/generations/stream`, { prompt: "a fox", size: "10x10" });
    expect(bad.status).toBe(400);
    const badBody = (await bad.json()) as Record<string, unknown>;
    expect(badBody).toEqual({ error: { message: expect.any(String), type: "invalid_request_error", param: "size", code: expect.any(String) } });
    const noPrompt = await postJson(`${s.url}/v1/images/generations/stream`, { size: "64x64" });
    expect(noPrompt.status).toBe(400);
    expect(await noPrompt.json()).toMatchObject({ error: { type: "invalid_request_error", message: expect.stringContaining("prompt") } });
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);

    const res = await postJson(`${s.url}/v1/images/generations/stream`, { prompt: "a fox", size: "64x64", steps: 2, refine: false });
    const { messages } = parseSse(await res.text());
    const last = messages.at(-1)!;
    expect(last.event).toBe("error");
    expect(JSON.parse(last.data)).toEqual({ type: "error", error: { message: expect.stringContaining("sd-cli"), type: "server_error", code: "sd_failed", param: null } });
    expect(messages.some((m) => m.event === "done")).toBe(false);
    // The seed API's own routes keep their shape.
    const seedBad = await postJson(`${s.url}/generate/stream`, { prompt: "a fox", width: 10 });
    expect(await seedBad.json()).toMatchObject({ success: false });
  });

  it("POST /v1/images/generations/stream: an OpenAI body answered with the seed events", async () => {
    s = await startServerStack();
    const res = await postJson(`${s.url}/v1/images/generations/stream`, { prompt: "a fox", size: "64x64", steps: 2, response_format: "url" });
    const { messages } = parseSse(await res.text());
    expect(messages.filter((m) => m.event === "progress").length).toBeGreaterThan(3);
    const done = JSON.parse(messages.at(-1)!.data) as { done: boolean; data: { url: string }[] };
    expect(messages.at(-1)!.event).toBe("done");
    expect(done.done).toBe(true);
    expect(done.data[0]!.url).toMatch(/\/images\/[^/]+\.png$/);
  });
});
