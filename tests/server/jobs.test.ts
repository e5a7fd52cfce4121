import { afterEach, describe, expect, it } from "vitest";
import { isAlive, readSpawns, readViolations } from "../fakes/fake-gpu.mjs";
import { parseSse, postJson, startServerStack, type ServerStack, type SseMessage } from "./harness.js";

let s: ServerStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

/** A job slow enough to join, leave and rejoin while it samples. */
const slowJob = { prompt: "a red fox in the snow", size: "64x64", steps: 8, refine: false };

async function startJob(url: string, body: unknown = slowJob): Promise<{ id: string; events_url: string; status: string }> {
  const res = await postJson(`${url}/v1/jobs`, body);
  expect(res.status).toBe(202);
  return (await res.json()) as { id: string; events_url: string; status: string };
}

/**
 * Reads a job stream as a client would, until `stop` says to hang up (or the stream
 * ends); returns every message seen.
 */
async function readJobStream(url: string, headers: Record<string, string>, stop: (seen: SseMessage[]) => boolean = () => false): Promise<SseMessage[]> {
  const controller = new AbortController();
  const res = await fetch(url, { headers, signal: controller.signal });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return parseSse(text).messages;
    text += decoder.decode(value, { stream: true });
    // Only whole events count: the last block may still be arriving.
    const complete = text.slice(0, text.lastIndexOf("\n\n") + 2);
    const seen = parseSse(complete).messages;
    if (stop(seen)) {
      controller.abort();
      return seen;
    }
  }
}

const ids = (messages: SseMessage[]) => messages.map((m) => Number(m.id));

async function getJob(url: string, id: string) {
  const res = await fetch(`${url}/v1/jobs/${id}`);
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, any>;
}

describe("jobs that outlive their connection", () => {
  it("a client that reconnects with Last-Event-ID gets exactly the events it missed", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_STEP_MS: "120" } });
    const job = await startJob(s.url);
    expect(job.events_url).toBe(`${s.url}/v1/jobs/${job.id}/events`);

    // Hang up after the second sampling step.
    const before = await readJobStream(job.events_url, {}, (seen) => seen.some((m) => m.event === "status" && JSON.parse(m.data).step?.current === 2));
    const lastSeen = before.at(-1)!.id!;
    // Steps go on while nobody listens.
    await new Promise((resolve) => setTimeout(resolve, 400));
    const after = await readJobStream(job.events_url, { "Last-Event-ID": lastSeen });

    // No gap, no repeat: the ids run on from the last one seen, to the end.
    const all = [...ids(before), ...ids(after)];
    expect(all).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));
    expect(after[0]!.id).toBe(String(Number(lastSeen) + 1));
    const end = after.at(-1)!;
    expect(end.event).toBe("end");
    const finished = JSON.parse(end.data);
    expect(finished).toMatchObject({ id: job.id, status: "succeeded", result: { type: "images" } });
    // Every sampling step was seen exactly once across the two connections.
    const steps = [...before, ...after].filter((m) => m.event === "status" && JSON.parse(m.data).step).map((m) => JSON.parse(m.data).step.current);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);

    // A replay after the end is the same stream (previews aside: they go once the image is there).
    const replay = await readJobStream(job.events_url, {});
    const noPreviews = (messages: SseMessage[]) => messages.filter((m) => m.event !== "preview").map((m) => [m.id, m.event, m.event === "end" ? "" : m.data]);
    expect(noPreviews(replay)).toEqual(noPreviews([...before, ...after]));
    // ?after= works like the header, for clients that cannot set it.
    expect(ids(await readJobStream(`${job.events_url}?after=${Number(end.id) - 1}`, {}))).toEqual([Number(end.id)]);
  });

  it("GET /v1/jobs/:id reports status, progress and links that serve the image; GET /v1/jobs lists newest first", async () => {
    s = await startServerStack();
    const first = await startJob(s.url, { ...slowJob, steps: 2 });
    expect(first.status).toBe("running");
    await readJobStream(first.events_url, {});
    const second = await startJob(s.url, { ...slowJob, steps: 2, size: "64x128" });
    await readJobStream(second.events_url, {});

    const done = await getJob(s.url, first.id);
    expect(done).toMatchObject({
      object: "diffugen.job",
      mode: "image",
      status: "succeeded",
      progress: 100,
      error: null,
      request: { prompt: slowJob.prompt, width: 64, height: 64, steps: 2 },
      result: { type: "images", model: "sd15", prompt: slowJob.prompt, parameters: { steps: 2, width: 64, height: 64 } },
    });
    const image = done.result.images[0];
    expect(image.url).toMatch(new RegExp(`^${s.url}/images/`));
    const png = await fetch(image.url);
    expect(png.status).toBe(200);
    expect(png.headers.get("content-type")).toBe("image/png");

    const list = (await (await fetch(`${s.url}/v1/jobs?limit=1`)).json()) as Record<string, any>;
    expect(list).toMatchObject({ object: "list", has_more: true, first_id: second.id, last_id: second.id });
    const next = (await (await fetch(`${s.url}/v1/jobs?limit=1&before=${second.id}`)).json()) as Record<string, any>;
    expect(next.data.map((j: { id: string }) => j.id)).toEqual([first.id]);
    expect(next.has_more).toBe(false);

    const missing = await fetch(`${s.url}/v1/jobs/job-nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: "job_not_found" } });
    expect((await fetch(`${s.url}/v1/jobs?limit=0`)).status).toBe(400);
    expect((await fetch(`${first.events_url}`, { headers: { "Last-Event-ID": "x" } })).status).toBe(400);
  });

  it("POST /v1/jobs/:id/cancel stops sd-cli, gives the GPU back and reloads the LLM", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_STEP_MS: "300" } });
    const job = await startJob(s.url, { ...slowJob, steps: 20 });
    await readJobStream(job.events_url, {}, (seen) => seen.some((m) => m.event === "status" && JSON.parse(m.data).step));

    const res = await fetch(`${s.url}/v1/jobs/${job.id}/cancel`, { method: "POST" });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: job.id, status: "cancelled", error: { code: "cancelled" } });
    const again = await fetch(`${s.url}/v1/jobs/${job.id}/cancel`, { method: "POST" });
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({
      error: { code: "job_not_cancellable", message: `Job '${job.id}' cannot be cancelled: it was already cancelled` },
    });

    await s.stack.deps.scheduler.whenSettled();
    expect(s.stack.deps.scheduler.state().gpu).toEqual({ kind: "idle" });
    expect(s.stack.ollama.listed()).toContain("qwen2.5:3b");
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
    for (const spawn of readSpawns(s.stack.gpuDir)) expect(isAlive(spawn.pid)).toBe(false);
    // Its stream ends with the cancel.
    const events = await readJobStream(job.events_url, {});
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ status: "cancelled" });
  });

  it("a streaming client whose job is cancelled from elsewhere is told so, in its dialect", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_STEP_MS: "200" } });
    const res = await postJson(`${s.url}/v1/images/generations`, { ...slowJob, steps: 20, stream: true });
    const jobId = res.headers.get("x-diffugen-job-id")!;
    const body = res.text();
    await readJobStream(`${s.url}/v1/jobs/${jobId}/events`, {}, (seen) => seen.some((m) => m.event === "status" && JSON.parse(m.data).step));
    expect((await fetch(`${s.url}/v1/jobs/${jobId}/cancel`, { method: "POST" })).status).toBe(200);
    const last = parseSse(await body).messages.at(-1)!;
    expect(last.event).toBe("error");
    expect(JSON.parse(last.data)).toMatchObject({ type: "error", error: { code: "cancelled" } });
  });

  it("responses that start a job name it, and image streams share its event ids", async () => {
    s = await startServerStack();
    const res = await postJson(`${s.url}/v1/images/generations`, { ...slowJob, steps: 3, stream: true });
    const jobId = res.headers.get("x-diffugen-job-id");
    expect(jobId).toMatch(/^job-/);
    const streamed = parseSse(await res.text()).messages;
    const replayed = await readJobStream(`${s.url}/v1/jobs/${jobId}/events`, {});
    // Each streamed event's id is the id of the job event it came from.
    const stepIds = (messages: SseMessage[], stepOf: (m: SseMessage) => number | undefined) =>
      messages.flatMap((m) => (stepOf(m) === undefined ? [] : [[stepOf(m), m.id]]));
    expect(stepIds(streamed, (m) => (m.event === "diffugen.progress" ? JSON.parse(m.data).step?.current : undefined))).toEqual(
      stepIds(replayed, (m) => (m.event === "status" ? JSON.parse(m.data).step?.current : undefined)),
    );
    const plain = await postJson(`${s.url}/v1/images/generations`, { ...slowJob, steps: 2 });
    expect(plain.headers.get("x-diffugen-job-id")).toMatch(/^job-/);
  });
});

describe("CANCEL_ON_DISCONNECT", () => {
  async function leaveMidway(url: string): Promise<string> {
    const res = await postJson(`${url}/v1/images/generations`, { ...slowJob, steps: 6, stream: true });
    const jobId = res.headers.get("x-diffugen-job-id")!;
    const reader = res.body!.getReader();
    let text = "";
    while (!text.includes('"step":{"current":1')) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    return jobId;
  }

  it("false: an image job goes on after its client leaves, and its answer waits in /v1/jobs", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_STEP_MS: "100" }, server: { cancelOnDisconnect: { chat: true, images: false } } });
    const jobId = await leaveMidway(s.url);
    const rest = await readJobStream(`${s.url}/v1/jobs/${jobId}/events`, {});
    expect(JSON.parse(rest.at(-1)!.data)).toMatchObject({ status: "succeeded", result: { type: "images" } });
  });

  it("true (the default): the job is cancelled when its client leaves", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_STEP_MS: "100" } });
    const jobId = await leaveMidway(s.url);
    const rest = await readJobStream(`${s.url}/v1/jobs/${jobId}/events`, {});
    expect(JSON.parse(rest.at(-1)!.data)).toMatchObject({ status: "cancelled" });
  });
});
