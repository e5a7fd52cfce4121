import http from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { LLM_MODEL } from "../helpers/stack.js";
import { until } from "../helpers/until.js";
import { startServerStack, type ServerStack } from "./harness.js";

/**
 * MAX_STREAMS_PER_CLIENT: one client address may hold only so many streaming answers at
 * once. The next is 429 with Retry-After in the route's own error shape, before any job
 * starts or any call reaches Ollama; another address is not affected; a stream that ends
 * gives its slot back.
 */

let s: ServerStack | undefined;
const held: AbortController[] = [];

afterEach(async () => {
  for (const stream of held.splice(0)) stream.abort();
  await s?.close();
  s = undefined;
});

/** A job that draws for a while (100 steps of 100 ms), whose events streams can follow. */
async function longJob(url: string): Promise<string> {
  const res = await fetch(`${url}/v1/jobs`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt: "a fox", size: "64x64", steps: 100, refine: false }) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

/** Opens the job's event stream and keeps it open (unread); its status. */
async function holdStream(url: string, id: string): Promise<number> {
  const stop = new AbortController();
  held.push(stop);
  const res = await fetch(`${url}/v1/jobs/${id}/events`, { signal: stop.signal });
  return res.status;
}

function post(url: string, body: unknown): Promise<Response> {
  return fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

/** GET from another loopback address (127.0.0.2): another client. */
function getFrom(localAddress: string, url: string): Promise<{ status: number; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { localAddress, agent: false }, (res) => resolve({ status: res.statusCode ?? 0, close: () => req.destroy() }));
    req.on("error", reject);
  });
}

describe("MAX_STREAMS_PER_CLIENT", () => {
  it("the third stream from one address is 429 in each dialect's shape; nothing starts; a slot comes back when a stream ends", async () => {
    s = await startServerStack({ server: { maxStreamsPerClient: 2 }, sdEnv: { FAKE_SD_STEP_MS: "100" } });
    const id = await longJob(s.url);
    expect(await holdStream(s.url, id)).toBe(200);
    expect(await holdStream(s.url, id)).toBe(200);
    // What reached Ollama's chat endpoints so far (the job itself only unloads and polls /api/ps).
    const chats = () => s!.stack.ollama.requests.filter((r) => r.path === "/api/chat" || r.path.startsWith("/v1/")).length;
    const chatsBefore = chats();

    // OpenAI's shape under /v1: a streamed chat, a streamed image, the job's events again.
    for (const res of [
      await post(`${s.url}/v1/chat/completions`, { model: "diffugen", stream: true, messages: [{ role: "user", content: "draw a fox" }] }),
      await post(`${s.url}/v1/images/generations`, { prompt: "a fox", size: "64x64", stream: true }),
      await fetch(`${s.url}/v1/jobs/${id}/events`),
    ]) {
      expect(res.status, res.url).toBe(429);
      expect(res.headers.get("retry-after")).toBe("5");
      expect(await res.json()).toMatchObject({ error: { type: "rate_limit_error", code: "too_many_streams", message: expect.stringContaining("MAX_STREAMS_PER_CLIENT") } });
    }
    // The original API's shape on /generate/stream.
    const seed = await post(`${s.url}/generate/stream`, { prompt: "a fox" });
    expect(seed.status).toBe(429);
    expect(seed.headers.get("retry-after")).toBe("5");
    expect(await seed.json()).toMatchObject({ success: false, code: "too_many_streams" });
    // Ollama's own shapes under /ollama: native `{"error"}`, and OpenAI's on its /v1.
    const native = await post(`${s.url}/ollama/api/chat`, { model: LLM_MODEL, messages: [{ role: "user", content: "hi" }] });
    expect(native.status).toBe(429);
    expect(native.headers.get("retry-after")).toBe("5");
    const nativeBody = (await native.json()) as Record<string, unknown>;
    expect(Object.keys(nativeBody)).toEqual(["error"]);
    expect(nativeBody.error).toMatch(/MAX_STREAMS_PER_CLIENT/);
    const compatible = await post(`${s.url}/ollama/v1/chat/completions`, { model: LLM_MODEL, stream: true, messages: [{ role: "user", content: "hi" }] });
    expect(compatible.status).toBe(429);
    expect(await compatible.json()).toMatchObject({ error: { message: expect.stringContaining("MAX_STREAMS_PER_CLIENT") } });

    // Nothing was started for them: one job, no chat sent to Ollama; answers that do not stream still go.
    const jobs = (await (await fetch(`${s.url}/v1/jobs`)).json()) as { data: unknown[] };
    expect(jobs.data).toHaveLength(1);
    expect(chats()).toBe(chatsBefore);
    expect((await fetch(`${s.url}/v1/models`)).status).toBe(200);
    expect((await post(`${s.url}/ollama/api/show`, { model: LLM_MODEL })).status).toBe(200);

    // Another address is another client.
    const other = await getFrom("127.0.0.2", `${s.url}/v1/jobs/${id}/events`);
    expect(other.status).toBe(200);
    other.close();

    // One stream ends: its slot is free again.
    held.shift()!.abort();
    const again = await until("a stream slot to be given back", async () => {
      const res = await fetch(`${s!.url}/v1/jobs/${id}/events`, { signal: AbortSignal.timeout(5_000) });
      if (res.status === 429) {
        await res.body?.cancel();
        return false;
      }
      return res;
    });
    expect(again.status).toBe(200);
    expect(again.headers.get("content-type")).toMatch(/^text\/event-stream/);
    await again.body?.cancel();
    await fetch(`${s.url}/v1/jobs/${id}/cancel`, { method: "POST" });
  });

  it("0 turns it off", async () => {
    s = await startServerStack({ server: { maxStreamsPerClient: 0 }, sdEnv: { FAKE_SD_STEP_MS: "100" } });
    const id = await longJob(s.url);
    for (let i = 0; i < 12; i++) expect(await holdStream(s.url, id)).toBe(200);
    await fetch(`${s.url}/v1/jobs/${id}/cancel`, { method: "POST" });
  });
});
