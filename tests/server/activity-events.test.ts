import { afterEach, describe, expect, it } from "vitest";
import type { GpuSchedulerState } from "../../src/gpu/index.js";
import { readViolations } from "../fakes/fake-gpu.mjs";
import { EventStreamReader } from "../helpers/event-stream-reader.js";
import { LLM_MODEL } from "../helpers/stack.js";
import { sleep } from "../helpers/timing.js";
import { postJson, startServerStack, type ServerStack, type SseMessage } from "./harness.js";

/**
 * GET /v1/events on its own: the stream the operator page is built from. Against the full
 * stack with the doubles (fake Ollama, sd-cli double, simulated GPU); the scheduler's own
 * state changes, heard directly, are what the stream must tell, once each and in order.
 */

let s: ServerStack | undefined;
const readers: EventStreamReader[] = [];
afterEach(async () => {
  for (const reader of readers.splice(0)) reader.close();
  await s?.close();
  s = undefined;
});

async function openEvents(url: string, headers: Record<string, string> = {}): Promise<EventStreamReader> {
  const reader = await EventStreamReader.open(`${url}/v1/events`, headers);
  readers.push(reader);
  return reader;
}

const seqOf = (message: SseMessage) => Number(message.id!.split(":")[1]);
const streamOf = (message: SseMessage) => message.id!.split(":")[0];
const data = (message: SseMessage) => JSON.parse(message.data);
/** Consecutive duplicates out: what a listener told of each change sees. */
const changes = <T>(values: T[]) => values.filter((v, i) => i === 0 || JSON.stringify(v) !== JSON.stringify(values[i - 1]));

/** The scheduler's holder as the stream shows it (snake_case). */
function holderView(state: GpuSchedulerState["gpu"]) {
  if (state.kind === "llm") return { kind: "llm", leases: state.leases, job_ids: state.jobIds, since: state.since };
  if (state.kind === "diffusion") return { kind: "diffusion", job_id: state.jobId, since: state.since };
  return { kind: "idle" };
}

describe("GET /v1/events", () => {
  it("tells every change of the GPU, the queue, the jobs and the gateway's calls once, in order", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_STEP_MS: "60" } });
    const scheduler = s.stack.deps.scheduler;
    // What the scheduler itself says, heard beside the stream.
    const states: GpuSchedulerState[] = [];
    scheduler.onStateChange((state) => states.push(state));

    const events = await openEvents(s.url);
    const snapshot = await events.waitForEvent("snapshot");
    expect(events.messages[0]).toBe(snapshot);
    expect(data(snapshot)).toMatchObject({ gpu: { holder: { kind: "idle" }, queue: [] }, jobs: [], spans: [] });

    const started = await postJson(`${s.url}/v1/jobs`, { prompt: "a lighthouse at dusk", size: "64x64", steps: 6 });
    expect(started.status).toBe(202);
    const job = (await started.json()) as { id: string };
    // While the image is drawn, an LLM call through the gateway has to wait for the GPU.
    await events.waitForEvent("job.progress", (d) => d.job.job_id === job.id && d.job.step?.current >= 1);
    const chat = postJson(`${s.url}/ollama/api/chat`, { model: LLM_MODEL, stream: false, messages: [{ role: "user", content: "hello" }] });
    expect((await chat).status).toBe(200);
    await events.waitForEvent("gateway.call", (d) => d.call.state === "ended");
    await scheduler.whenSettled();
    await events.waitForEvent("gpu.holder", (d) => d.holder.kind === "idle" && states.at(-1)?.gpu.kind === "idle");
    await sleep(100); // anything late would show now
    const seen = events.messages;

    // Numbered one by one from the snapshot on: none missed, none twice, one stream.
    const seqs = seen.map(seqOf);
    expect(seqs).toEqual(Array.from({ length: seen.length }, (_, i) => seqs[0]! + i));
    expect(new Set(seen.map(streamOf)).size).toBe(1);

    // The GPU's changes as the scheduler made them, each once, in its order.
    const after = (type: string) => seen.filter((m) => m.event === type).map(data);
    expect(after("gpu.holder").map((d) => d.holder)).toEqual(changes(states.map((st) => holderView(st.gpu))).filter((h, i) => i > 0 || h.kind !== "idle"));
    expect(after("gpu.llm").map((d) => d.state)).toEqual(changes(states.map((st) => st.llm)).filter((l) => l !== "unknown"));
    expect(after("gpu.llm").map((d) => d.state)).toEqual(["unloading", "unloaded", "loading", "resident"]);
    expect(after("gpu.queue").map((d) => d.queue.map((q: any) => q.job_id))).toEqual(changes(states.map((st) => st.queue.map((q) => q.jobId))).filter((q, i) => i > 0 || q.length > 0));

    // The holder went LLM (the prompt refined) → diffusion (this job) → and back.
    const holders = after("gpu.holder").map((d) => d.holder.kind);
    expect(holders.indexOf("llm")).toBeLessThan(holders.indexOf("diffusion"));
    expect(after("gpu.holder").find((d) => d.holder.kind === "diffusion").holder.job_id).toBe(job.id);

    // The job's life: started, every sampling step once and in order, its image, its outcome.
    const ofJob = seen.filter((m) => m.event?.startsWith("job.") && (data(m).job?.id ?? data(m).job?.job_id ?? data(m).job_id) === job.id);
    expect(ofJob[0]!.event).toBe("job.started");
    expect(ofJob.at(-1)!.event).toBe("job.outcome");
    expect(data(ofJob.at(-1)!).job).toMatchObject({ id: job.id, status: "succeeded", result: { type: "images" } });
    const steps = ofJob.filter((m) => m.event === "job.progress" && data(m).job.step).map((m) => data(m).job.step.current);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6]);
    const sampling = ofJob.find((m) => m.event === "job.progress" && data(m).job.step);
    expect(data(sampling!).job).toMatchObject({ phase: "sampling", backend: "cli", step: { total: 6 } });
    const image = ofJob.find((m) => m.event === "job.image");
    expect(data(image!).url).toMatch(/\/images\/[^/?]+\.png$/);
    expect(ofJob.map((m) => m.event).indexOf("job.image")).toBeLessThan(ofJob.map((m) => m.event).indexOf("job.outcome"));
    expect(ofJob.some((m) => m.event === "job.refined")).toBe(true);

    // The gateway's call: admitted, waited in the queue behind the image, ran, ended.
    const calls = after("gateway.call").map((d) => d.call);
    expect(calls.map((c) => c.state)).toEqual(["admitted", "ended"]);
    expect(calls[1]).toMatchObject({ via: "ollama", route: "/api/chat", model: LLM_MODEL, status: 200, outcome: "completed" });
    const queued = after("gpu.queue").flatMap((d) => d.queue);
    expect(queued).toContainEqual(expect.objectContaining({ job_id: calls[0].id, phase: "llm", position: 1, label: `/api/chat ${LLM_MODEL}` }));

    // Every span opens once and closes once; the swap is an unload and a load around the image.
    const spans = after("timeline.span").map((d) => d.span);
    const byId = new Map<string, any[]>();
    for (const span of spans) byId.set(span.id, [...(byId.get(span.id) ?? []), span]);
    for (const [, told] of byId) {
      expect(told.map((span) => span.end === undefined)).toEqual([true, false]);
    }
    const kinds = [...byId.values()].map((told) => told[0].kind);
    expect(kinds).toEqual(["llm_call", "unload", "image_job", "load", "llm_call"]);
    expect([...byId.values()].at(-1)![1]).toMatchObject({ lane: "llm", label: `/api/chat ${LLM_MODEL}` });

    // A new stream now starts from the whole picture: the spans of the last 15 minutes.
    const later = await openEvents(s.url);
    const now = data(await later.waitForEvent("snapshot"));
    expect(now.last_id).toBe(seen.at(-1)!.id);
    expect(now.spans.map((span: any) => span.kind)).toEqual(kinds);
    expect(now.gpu).toMatchObject({ holder: { kind: "idle" }, llm: "resident", queue: [] });
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });

  it("a reconnect with Last-Event-ID resumes after that event: no gap, no repeat", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_STEP_MS: "80" } });
    const reference = await openEvents(s.url);
    const first = await openEvents(s.url);
    await first.waitForEvent("snapshot");
    await reference.waitForEvent("snapshot");

    const job = (await (await postJson(`${s.url}/v1/jobs`, { prompt: "rain on a tin roof", size: "64x64", steps: 10, refine: false })).json()) as { id: string };
    await first.waitForEvent("job.progress", (d) => d.job.step?.current === 3);
    first.close();
    const lastSeen = first.messages.at(-1)!;
    await sleep(300); // steps go on while nobody listens

    const resumed = await openEvents(s.url, { "Last-Event-ID": lastSeen.id! });
    await resumed.waitForEvent("job.outcome", (d) => d.job.id === job.id);
    await reference.waitForEvent("job.outcome", (d) => d.job.id === job.id);

    // No snapshot: it picks up right after the id it gave.
    expect(resumed.messages[0]!.event).not.toBe("snapshot");
    expect(seqOf(resumed.messages[0]!)).toBe(seqOf(lastSeen) + 1);
    // The two halves are the one stream a client that never left saw.
    const shown = (messages: SseMessage[]) => messages.filter((m) => m.event !== "snapshot").map((m) => [m.id, m.event, m.data]);
    const joined = [...shown(first.messages), ...shown(resumed.messages)];
    expect(joined).toEqual(shown(reference.messages).slice(0, joined.length));
    const steps = joined.filter(([, event, d]) => event === "job.progress" && JSON.parse(d!).job.step).map(([, , d]) => JSON.parse(d!).job.step.current);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);

    // `?after=` says the same for a client that cannot set headers.
    const replay = await EventStreamReader.open(`${s.url}/v1/events?after=${encodeURIComponent(lastSeen.id!)}`);
    readers.push(replay);
    await replay.waitForEvent("job.outcome");
    expect(shown(replay.messages).slice(0, 5)).toEqual(shown(resumed.messages).slice(0, 5));
  });

  it("an id it cannot resume from gets `reset`, then a snapshot; a malformed one a 400", async () => {
    s = await startServerStack();
    const live = await openEvents(s.url);
    const stream = streamOf(await live.waitForEvent("snapshot"));

    // From another run of DiffuGen (a restart draws a new stream id).
    const other = stream === "0badcafe" ? "0badcaff" : "0badcafe";
    const restarted = await openEvents(s.url, { "Last-Event-ID": `${other}:12` });
    await restarted.waitForEvent("snapshot");
    expect(restarted.messages.map((m) => m.event)).toEqual(["reset", "snapshot"]);
    expect(data(restarted.messages[0]!).reason).toMatch(/another run/);
    // An id this run never gave out yet.
    const future = await openEvents(s.url, { "Last-Event-ID": `${stream}:99999` });
    await future.waitForEvent("snapshot");
    expect(future.messages[0]!.event).toBe("reset");

    const bad = await fetch(`${s.url}/v1/events`, { headers: { "Last-Event-ID": "../../etc/passwd" } });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { type: "invalid_request_error", param: "after" } });
  });

  it("needs the API key, and takes one of the client's stream slots", async () => {
    s = await startServerStack({ server: { apiKey: "sekrit", maxStreamsPerClient: 1 } });
    const refused = await fetch(`${s.url}/v1/events`);
    expect(refused.status).toBe(401);
    expect(await refused.json()).toMatchObject({ error: { code: "missing_api_key" } });

    const one = await openEvents(s.url, { Authorization: "Bearer sekrit" });
    await one.waitForEvent("snapshot");
    const two = await fetch(`${s.url}/v1/events`, { headers: { Authorization: "Bearer sekrit" } });
    expect(two.status).toBe(429);
    expect(await two.json()).toMatchObject({ error: { code: "too_many_streams" } });
    one.close();
  });
});
