import { createHash } from "node:crypto";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { rawRequest } from "../reliability/helpers/raw-http.js";
import { startServerStack, type ServerStack } from "./harness.js";

/**
 * Slow clients (slow-loris) and body limits that hold with a key (issue 16). With
 * BODY_TIMEOUT_S at 1 s: a body trickled byte by byte is cut off with a 408 in the route's
 * shape and the connection closed; headers trickled likewise (node's 408). A model upload is
 * judged by its pauses instead, so a slow but steady one goes through. MAX_MODEL_UPLOAD_GB
 * bounds the gateway's model uploads; MAX_BODY_MB every other gateway body.
 */

let s: ServerStack | undefined;
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await s?.close();
  s = undefined;
});

interface Trickled {
  /** Everything the server wrote back. */
  answer: string;
  /** When the server closed the connection, in ms after the first byte was sent. */
  closedAfterMs: number;
  /** Bytes the client had sent when it was cut off. */
  sent: number;
}

/**
 * Sends `head` at once (or, with `trickleHead`, a byte at a time too), then `body` one byte
 * every `gapMs`, until the server closes the connection (or `giveUpMs`).
 */
function trickle(url: string, head: string, body: string, options: { gapMs: number; giveUpMs?: number; trickleHead?: boolean }): Promise<Trickled> {
  const { port, hostname } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  sockets.push(socket);
  const startedAt = Date.now();
  let answer = "";
  let sent = 0;
  return new Promise((resolve, reject) => {
    const bytes = options.trickleHead ? head + body : body;
    let timer: NodeJS.Timeout | undefined;
    const next = () => {
      if (sent >= bytes.length || socket.destroyed) return;
      socket.write(bytes[sent]!);
      sent += 1;
      timer = setTimeout(next, options.gapMs);
    };
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (answer += chunk));
    socket.on("error", () => undefined); // a reset is a way of being cut off too
    socket.on("close", () => {
      clearTimeout(timer);
      clearTimeout(giveUp);
      resolve({ answer, closedAfterMs: Date.now() - startedAt, sent });
    });
    const giveUp = setTimeout(() => {
      clearTimeout(timer);
      socket.destroy();
      reject(new Error(`still connected after ${options.giveUpMs ?? 8_000} ms; got: ${answer}`));
    }, options.giveUpMs ?? 8_000);
    socket.on("connect", () => {
      if (!options.trickleHead) socket.write(head);
      next();
    });
  });
}

function jsonOf(answer: string): unknown {
  return JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4));
}

const digest = (text: string) => `sha256:${createHash("sha256").update(text).digest("hex")}`;

describe("BODY_TIMEOUT_S", () => {
  it("a body trickled byte by byte is cut off after the timeout: 408 in OpenAI's shape, connection closed", async () => {
    s = await startServerStack({ server: { bodyTimeoutMs: 1_000 } });
    const body = JSON.stringify({ model: "diffugen", messages: [{ role: "user", content: "draw a fox ".repeat(20) }] });
    const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const cut = await trickle(s.url, head, body, { gapMs: 50 });
    expect(cut.sent).toBeLessThan(body.length);
    expect(cut.closedAfterMs).toBeGreaterThanOrEqual(900);
    expect(cut.closedAfterMs).toBeLessThan(4_000);
    expect(cut.answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(cut.answer).toMatch(/\r\nconnection: close\r\n/i);
    expect(jsonOf(cut.answer)).toMatchObject({ error: { code: "body_timeout", message: expect.stringContaining("BODY_TIMEOUT_S") } });
    // Nothing ran: no job was made from half a body.
    const jobs = (await (await fetch(`${s.url}/v1/jobs`)).json()) as { data: unknown[] };
    expect(jobs.data).toEqual([]);
  });

  it("the same on the original API (its shape) and on the Ollama gateway (Ollama's), chunked too", async () => {
    s = await startServerStack({ server: { bodyTimeoutMs: 1_000 } });
    const body = JSON.stringify({ prompt: "a fox in the snow, highly detailed" });
    const seed = await trickle(s.url, `POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`, body, { gapMs: 50 });
    expect(seed.answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(jsonOf(seed.answer)).toMatchObject({ success: false, code: "body_timeout" });

    const chat = JSON.stringify({ model: "qwen2.5:3b", messages: [{ role: "user", content: "hi there, how are you?" }] });
    const chunked = chat
      .split("")
      .map((ch) => `1\r\n${ch}\r\n`)
      .join("");
    const gateway = await trickle(s.url, "POST /ollama/api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", chunked, { gapMs: 20 });
    expect(gateway.answer).toMatch(/^HTTP\/1\.1 408 /);
    const answer = jsonOf(gateway.answer) as Record<string, unknown>;
    expect(Object.keys(answer)).toEqual(["error"]);
    expect(answer.error).toMatch(/BODY_TIMEOUT_S/);
    expect(s.stack.ollama.requests.filter((r) => r.path === "/api/chat")).toEqual([]);
  });

  it("headers trickled byte by byte are cut off too (node's 408)", async () => {
    s = await startServerStack({ server: { bodyTimeoutMs: 1_000 } });
    const head = `GET /v1/models HTTP/1.1\r\nHost: x\r\n${"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(4)}\r\n`;
    const cut = await trickle(s.url, head, "", { gapMs: 30, trickleHead: true });
    expect(cut.sent).toBeLessThan(head.length);
    expect(cut.closedAfterMs).toBeLessThan(4_000);
    expect(cut.answer).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("a model upload is judged by its pauses: slow and steady goes through, a pause longer than the timeout is cut", async () => {
    s = await startServerStack({ server: { bodyTimeoutMs: 1_000 } });
    // 3 s in all, longer than the timeout, but never more than 250 ms without a byte.
    const blob = "x".repeat(12);
    const steady = await trickle(s.url, `POST /ollama/api/blobs/${digest(blob)} HTTP/1.1\r\nHost: x\r\nContent-Length: ${blob.length}\r\nConnection: close\r\n\r\n`, blob, { gapMs: 250 });
    expect(steady.closedAfterMs).toBeGreaterThan(2_500);
    expect(steady.answer).toMatch(/^HTTP\/1\.1 201 /);
    expect(s.stack.ollama.requests.some((r) => r.method === "POST" && r.path === `/api/blobs/${digest(blob)}`)).toBe(true);

    const stalled = "y".repeat(4);
    const cut = await trickle(s.url, `POST /ollama/api/blobs/${digest(stalled)} HTTP/1.1\r\nHost: x\r\nContent-Length: ${stalled.length}\r\n\r\n`, stalled, { gapMs: 1_600 });
    expect(cut.sent).toBeLessThan(stalled.length);
    expect(cut.answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(jsonOf(cut.answer)).toEqual({ error: expect.stringContaining("BODY_TIMEOUT_S") });
  });
});

describe("body limits on the gateway", () => {
  it("MAX_BODY_MB bounds its JSON bodies; MAX_MODEL_UPLOAD_GB bounds /api/blobs and /api/create instead", async () => {
    s = await startServerStack({ server: { maxBodyBytes: 4096, maxModelUploadBytes: 64 * 1024 } });
    const big = (size: number) => JSON.stringify({ model: "qwen2.5:3b", messages: [{ role: "user", content: "x".repeat(size) }] });
    const chat = await rawRequest(s.url, { method: "POST", path: "/ollama/api/chat", headers: { "Content-Type": "application/json" }, body: big(8_000), chunked: true });
    expect(chat.status).toBe(413);
    expect(chat.json).toEqual({ error: expect.stringContaining("MAX_BODY_MB") });

    // /api/create: over MAX_BODY_MB, within the upload limit, reaches Ollama (which answers it).
    const create = await rawRequest(s.url, {
      method: "POST",
      path: "/ollama/api/create",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: "mine", from: "qwen2.5:3b", system: "s".repeat(8_000), stream: false }),
    });
    expect(create.status).not.toBe(413);
    expect(s.stack.ollama.requests.some((r) => r.path === "/api/create")).toBe(true);

    // A blob past the upload limit: refused from its Content-Length, and counted when chunked.
    const blob = Buffer.alloc(100 * 1024, 1);
    const id = `sha256:${createHash("sha256").update(blob).digest("hex")}`;
    for (const chunked of [false, true]) {
      const res = await rawRequest(s.url, { method: "POST", path: `/ollama/api/blobs/${id}`, body: blob, chunked });
      expect({ chunked, status: res.status }).toEqual({ chunked, status: 413 });
      expect(res.json).toEqual({ error: expect.stringContaining("MAX_MODEL_UPLOAD_GB") });
    }
    expect((await rawRequest(s.url, { method: "HEAD", path: `/ollama/api/blobs/${id}` })).status).toBe(404);
    // Within it, a blob far larger than MAX_BODY_MB goes through.
    const fits = Buffer.alloc(32 * 1024, 2);
    const fitsId = `sha256:${createHash("sha256").update(fits).digest("hex")}`;
    expect((await rawRequest(s.url, { method: "POST", path: `/ollama/api/blobs/${fitsId}`, body: fits, chunked: true })).status).toBe(201);
  });
});
