import fs from "node:fs";
import { PNG } from "pngjs";
import { afterEach, describe, expect, it } from "vitest";
import type { ProgressEvent } from "../../src/events/progress-event.js";
import { isAlive, readSpawns, readViolations } from "../fakes/fake-gpu.mjs";
import { until } from "../helpers/until.js";
import { taskAnswers, taskMessage } from "../server/openwebui-tasks.js";
import { runGraph, startStack, type Stack } from "./harness.js";

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

const tiny = { width: 64, height: 64, steps: 3 };

/** After a run the GPU must be free and the LLM back, with the invariant never broken. */
async function expectGpuReturned(s: Stack) {
  await s.deps.scheduler.whenSettled();
  expect(s.deps.scheduler.state().gpu).toEqual({ kind: "idle" });
  expect(s.deps.scheduler.state().queue).toEqual([]);
  expect(s.ollama.listed()).toContain("qwen2.5:3b");
  expect(readViolations(s.gpuDir)).toEqual([]);
  for (const spawn of readSpawns(s.gpuDir)) expect(isAlive(spawn.pid)).toBe(false);
}

const phasesOf = (events: ProgressEvent[]) => [...new Set(events.map((e) => e.phase))];

describe("the DiffuGen graph, driven with the doubles", () => {
  it("a job draws with the parameters admission resolved: the seed drawn there, said once in a params event", async () => {
    stack = await startStack();
    const input = stack.runner.prepare({ mode: "image", request: { prompt: "a red fox", ...tiny } });
    expect(input.params).toMatchObject({ width: 64, height: 64, steps: 3, randomSeed: true });
    const job = stack.runner.start(input);
    const events: ProgressEvent[] = [];
    for await (const item of job.events) if (item.type === "progress") events.push(item.event);
    const outcome = await job.outcome;

    expect(outcome).toMatchObject({ kind: "images", model: "sd15", prompt: "a red fox, highly detailed" });
    if (outcome.kind !== "images") throw new Error(outcome.kind);
    expect(outcome.images[0]!.seed).toBe(input.params.seed);
    const said = events.filter((e) => e.kind === "params");
    expect(said).toHaveLength(1);
    expect(said[0]).toMatchObject({ model: "sd15", params: { seed: input.params.seed, steps: 3, prompt: "a red fox, highly detailed" } });
    // The refined words drew; every other value is admission's.
    const argv = readSpawns(stack.gpuDir)[0]!.argv;
    expect(argv[argv.indexOf("-s") + 1]).toBe(String(input.params.seed));
    expect(argv[argv.indexOf("-p") + 1]).toBe("a red fox, highly detailed");
    await job.finished;
    await expectGpuReturned(stack);
  });

  it("draws: refine → unload → diffuse → reload, with real progress and every node timed", async () => {
    stack = await startStack();
    const run = await runGraph(stack.deps, { request: { prompt: "a red fox", ...tiny } });

    expect(run.error).toBeUndefined();
    expect(run.state.error).toBeUndefined();
    expect(run.state.refined).toMatchObject({ prompt: "a red fox, highly detailed", fellBack: false });
    expect(run.state.model).toBe("sd15");
    expect(Object.keys(run.state.timings)).toEqual(["refine", "unload", "diffuse", "reload"]);
    expect(phasesOf(run.events)).toEqual([
      "refining",
      "queued",
      "unloading_llm",
      "loading_model",
      "sampling",
      "decoding",
      "saving",
      "reloading_llm",
      "complete",
    ]);
    const steps = run.events.filter((e) => e.kind === "status" && e.step).map((e) => (e.kind === "status" ? e.step?.current : 0));
    expect(steps).toEqual([1, 2, 3]);
    // Progress only moves forward, and the image comes out before the LLM is reloaded.
    const progress = run.events.map((e) => e.progress);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    const imageAt = run.events.findIndex((e) => e.kind === "image");
    const reloadAt = run.events.findIndex((e) => e.phase === "reloading_llm");
    expect(imageAt).toBeGreaterThan(-1);
    expect(imageAt).toBeLessThan(reloadAt);

    const [image] = run.state.images;
    expect(image).toMatchObject({ width: 64, height: 64, seed: run.state.params?.seed });
    const png = PNG.sync.read(fs.readFileSync(image!.path));
    expect([png.width, png.height]).toEqual([64, 64]);
    // sd-cli got the refined prompt, not the user's words.
    expect(readSpawns(stack.gpuDir)[0]?.argv).toContain("a red fox, highly detailed");
    await expectGpuReturned(stack);
  });

  it("replies in words when the user did not ask for a picture: the words stream as written, no unload, no sd-cli", async () => {
    stack = await startStack({
      ollama: { responder: (req) => (req.format ? JSON.stringify({ intent: "reply" }) : "Hello! I can draw for you.") },
    });
    const run = await runGraph(stack.deps, { mode: "chat", request: { prompt: "hi there, how are you?" } });

    expect(run.state.intent).toBe("reply");
    expect(run.state.replyText).toBe("Hello! I can draw for you.");
    // Piece by piece as the LLM wrote them, then the whole once more for the record.
    const pieces = run.events.flatMap((e) => (e.kind === "reply_delta" ? [e.text] : []));
    expect(pieces).toEqual(["Hello! ", "I ", "can ", "draw ", "for ", "you."]);
    const whole = run.events.findIndex((e) => e.kind === "reply");
    expect(run.events[whole]).toMatchObject({ text: "Hello! I can draw for you." });
    expect(run.events.findLastIndex((e) => e.kind === "reply_delta")).toBeLessThan(whole);
    // The decision is structured; the words are asked for in plain text, with the same model options.
    const [decision, words, ...more] = stack.ollama.requests.filter((r) => r.kind === "chat").map((r) => r.body!);
    expect(more).toEqual([]);
    expect(decision!.format).toBeDefined();
    expect(words!.format).toBeUndefined();
    expect(words).toMatchObject({ model: decision!.model, keep_alive: decision!.keep_alive, options: decision!.options, think: false, stream: true });
    expect(Object.keys(run.state.timings)).toEqual(["refine", "reply"]);
    expect(stack.ollama.stats.unload).toBe(0);
    expect(readSpawns(stack.gpuDir)).toEqual([]);
    await expectGpuReturned(stack);
  });

  it("a client's background task quoting 'draw a red fox' is answered as written: no decision, no unload, no sd-cli", async () => {
    stack = await startStack({
      // Whoever asks this LLM to decide would be told to draw.
      ollama: { responder: (req) => (req.format ? JSON.stringify({ intent: "draw", prompt: "a red fox", negative_prompt: "" }) : taskAnswers.title) },
    });
    const run = await runGraph(stack.deps, { mode: "chat", request: { prompt: taskMessage("title") } });

    expect(run.state.error).toBeUndefined();
    expect(run.state.intent).toBe("task");
    expect(run.state.replyText).toBe(taskAnswers.title);
    expect(run.events.flatMap((e) => (e.kind === "reply_delta" ? [e.text] : [])).join("")).toBe(taskAnswers.title);
    const chats = stack.ollama.requests.filter((r) => r.kind === "chat");
    expect(chats).toHaveLength(1);
    expect(chats[0]!.body?.format).toBeUndefined();
    // No voice of ours: the template is the whole instruction.
    expect(chats[0]!.body?.messages).toEqual([{ role: "user", content: taskMessage("title") }]);
    expect(Object.keys(run.state.timings)).toEqual(["refine", "reply"]);
    expect(stack.ollama.stats.unload).toBe(0);
    expect(readSpawns(stack.gpuDir)).toEqual([]);
    await expectGpuReturned(stack);
  });

  it("a reply keeps the LLM it decided with: an image job that arrives meanwhile waits for the words, not the other way round", async () => {
    stack = await startStack({
      ollama: { responder: (req) => (req.format ? JSON.stringify({ intent: "reply" }) : "Foxes live almost everywhere."), chatDelayMs: 200 },
    });
    const chat = stack.runner.start(stack.runner.prepare({ mode: "chat", request: { prompt: "where do foxes live?" }, messages: [] }));
    // The LLM is deciding: an image job (its prompt as written, so it goes straight for the GPU) arrives.
    for await (const item of chat.events) if (item.type === "progress" && item.event.message === "Reading your message") break;
    const image = stack.runner.start(stack.runner.prepare({ mode: "image", refinePrompt: false, request: { prompt: "a red fox", ...tiny } }));

    const answer = await chat.outcome;
    expect(answer).toEqual({ kind: "reply", text: "Foxes live almost everywhere.", warnings: [] });
    // The words came with the LLM still in VRAM: the picture waited for them.
    expect(readSpawns(stack.gpuDir)).toEqual([]);
    expect(stack.ollama.stats.unload).toBe(0);
    expect(await image.outcome).toMatchObject({ kind: "images" });
    await Promise.all([chat.finished, image.finished]);
    await expectGpuReturned(stack);
  });

  it("abort mid-reply: the stream rejects, Ollama is hung up on, the LLM lease given back", async () => {
    stack = await startStack({
      ollama: { responder: (req) => (req.format ? JSON.stringify({ intent: "reply" }) : "one two three four five six seven eight nine ten"), chunkDelayMs: 100 },
    });
    const controller = new AbortController();
    const run = await runGraph(
      stack.deps,
      { mode: "chat", request: { prompt: "count to ten" } },
      { signal: controller.signal, onEvent: (e) => e.kind === "reply_delta" && controller.abort() },
    );
    expect((run.error as Error)?.name).toBe("AbortError");
    expect(run.events.filter((e) => e.kind === "reply_delta").length).toBeLessThan(10);
    await until("Ollama to see the hang-up", () => stack!.ollama.stats.cancelled === 1);
    await expectGpuReturned(stack);
  });

  it("falls back to the user's prompt when refinement returns nonsense, and still draws", async () => {
    stack = await startStack({ ollama: { responder: () => "this is { not json" } });
    const run = await runGraph(stack.deps, { request: { prompt: "a (red:1.2) fox", ...tiny } });

    expect(run.state.error).toBeUndefined();
    expect(run.state.refined).toMatchObject({ prompt: "a (red:1.2) fox", fellBack: true });
    expect(run.state.warnings.length).toBeGreaterThan(0);
    expect(run.events.some((e) => e.kind === "warning" && e.phase === "refining")).toBe(true);
    expect(run.state.images).toHaveLength(1);
    await expectGpuReturned(stack);
  });

  it("a diffusion failure still reloads the LLM and ends with a typed error in state", async () => {
    stack = await startStack({ sdEnv: { FAKE_SD_CRASH_AT_STEP: "2", FAKE_SD_CRASH_MODE: "exit" } });
    const run = await runGraph(stack.deps, { request: { prompt: "a red fox", ...tiny } });

    expect(run.error).toBeUndefined();
    expect(run.state.error).toMatchObject({ code: "sd_failed", node: "diffuse" });
    expect(run.state.error?.message).toMatch(/sampling for image 1\/1 failed|generate failed|unet compute failed/);
    expect(Object.keys(run.state.timings)).toEqual(["refine", "unload", "diffuse", "reload"]);
    expect(run.events.some((e) => e.kind === "error")).toBe(true);
    expect(run.events.some((e) => e.phase === "reloading_llm")).toBe(true);
    expect(run.events.some((e) => e.phase === "complete")).toBe(false);
    await expectGpuReturned(stack);
  });

  it("stops before touching the GPU when the request cannot be drawn", async () => {
    stack = await startStack();
    const unknown = await runGraph(stack.deps, { request: { prompt: "a fox", model: "midjourney" } });
    expect(unknown.state.error).toMatchObject({ code: "model_not_found", param: "model", node: "refine" });

    const missing = await runGraph(stack.deps, { request: { prompt: "a fox", model: "sdxl" } });
    expect(missing.state.error).toMatchObject({ code: "model_files_missing" });
    expect(missing.state.error?.message).toContain("sd_xl_base_1.0.safetensors");

    const badSize = await runGraph(stack.deps, { request: { prompt: "a fox", width: 100 } });
    expect(badSize.state.error).toMatchObject({ code: "invalid_request", param: "width" });

    expect(stack.ollama.stats.unload).toBe(0);
    expect(readSpawns(stack.gpuDir)).toEqual([]);
  });

  it("abort mid-sampling: the stream rejects at once, sd-cli is gone, the GPU released, the LLM back", async () => {
    stack = await startStack({ sdEnv: { FAKE_SD_STEP_MS: "300" } });
    const controller = new AbortController();
    const started = Date.now();
    let abortedAt = 0;
    const run = await runGraph(
      stack.deps,
      { request: { prompt: "a red fox", width: 64, height: 64, steps: 20 } },
      {
        signal: controller.signal,
        onEvent: (e) => {
          if (e.kind === "status" && e.step?.current === 1 && !abortedAt) {
            abortedAt = Date.now();
            controller.abort();
          }
        },
      },
    );
    expect(abortedAt).toBeGreaterThan(0);
    expect((run.error as Error)?.name).toBe("AbortError");
    // 18 more steps would take 5+ s: the stream did not wait for the node.
    expect(Date.now() - started).toBeLessThan(4_000);
    await expectGpuReturned(stack);
    expect(fs.readdirSync(stack.outputDir).filter((f) => f.endsWith(".png"))).toEqual([]);
  });

  it("abort between nodes still releases the GPU lease (the next node never runs)", async () => {
    stack = await startStack();
    const controller = new AbortController();
    const run = await runGraph(
      stack.deps,
      { request: { prompt: "a red fox", ...tiny } },
      {
        signal: controller.signal,
        // The unload node has the lease once the LLM is confirmed out; abort right there.
        onEvent: (e) => {
          if (e.phase === "unloading_llm" && e.progress === 15) controller.abort();
        },
      },
    );
    expect((run.error as Error)?.name).toBe("AbortError");
    await expectGpuReturned(stack);
    expect(stack.deps.scheduler.stats().reloads.count).toBe(1);
  });

  it("two concurrent runs share one swap: one unload, one reload", async () => {
    stack = await startStack();
    const [a, b] = await Promise.all([
      runGraph(stack.deps, { request: { prompt: "a red fox", ...tiny } }),
      runGraph(stack.deps, { request: { prompt: "a grey wolf", ...tiny } }),
    ]);
    expect(a.state.images).toHaveLength(1);
    expect(b.state.images).toHaveLength(1);
    await expectGpuReturned(stack);
    const stats = stack.deps.scheduler.stats();
    expect(stats.unloads.count).toBe(1);
    expect(stats.reloads.count).toBe(1);
    // The first job's reload step says the second one took the GPU instead.
    const messages = [...a.events, ...b.events].filter((e) => e.phase === "reloading_llm").map((e) => e.message);
    expect(messages.some((m) => m.includes("Another image job has the GPU"))).toBe(true);
  });

  it("img2img: the init image and strength reach sd-cli", async () => {
    stack = await startStack();
    const init = `${stack.root}/init.png`;
    const png = new PNG({ width: 64, height: 64 });
    fs.writeFileSync(init, PNG.sync.write(png));
    const run = await runGraph(stack.deps, { request: { prompt: "make it a painting", initImage: init, strength: 0.4, ...tiny } });

    expect(run.state.error).toBeUndefined();
    expect(run.state.params).toMatchObject({ initImage: init, strength: 0.4 });
    const argv = readSpawns(stack.gpuDir)[0]?.argv ?? [];
    expect(argv[argv.indexOf("-i") + 1] ?? argv[argv.indexOf("--init-img") + 1]).toBe(init);
    expect(argv[argv.indexOf("--strength") + 1]).toBe("0.4");
    expect(run.state.images).toHaveLength(1);
    await expectGpuReturned(stack);
  });

  it("n = 2: both images, with consecutive seeds, each announced", async () => {
    stack = await startStack();
    const run = await runGraph(stack.deps, { request: { prompt: "a red fox", seed: 42, batchCount: 2, ...tiny } });

    expect(run.state.images.map((i) => i.seed)).toEqual([42, 43]);
    for (const image of run.state.images) expect(fs.existsSync(image.path)).toBe(true);
    expect(run.events.filter((e) => e.kind === "image")).toHaveLength(2);
    const imagesSampled = run.events.flatMap((e) => (e.kind === "status" && e.step?.current === 1 ? [e.step.image?.index] : []));
    expect(imagesSampled).toEqual([1, 2]);
    await expectGpuReturned(stack);
  });
});
