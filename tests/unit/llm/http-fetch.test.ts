import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { isConnectionLost, isUnreachable } from "../../../src/llm/errors.js";
import { httpFetch } from "../../../src/llm/http-fetch.js";

/** OllamaResidency's fetch on node:http: what ollama-js and errors.ts rely on from a fetch. */

let server: http.Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

async function serve(handler: http.RequestListener): Promise<string> {
  server = http.createServer(handler);
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("httpFetch", () => {
  it("sends method, headers and body, and answers with status, headers and the whole body", async () => {
    const url = await serve((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        res.writeHead(201, { "Content-Type": "application/json", "X-Seen": `${req.method} ${req.headers["content-type"]} ${body}` });
        res.end(JSON.stringify({ ok: true }));
      });
    });
    const res = await httpFetch(`${url}/api/chat`, { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"a":1}' });
    expect(res.status).toBe(201);
    expect(res.ok).toBe(true);
    expect(res.headers.get("x-seen")).toBe('POST application/json {"a":1}');
    expect(await res.json()).toEqual({ ok: true });
  });

  it("reuses its connection for the next request (keep-alive)", async () => {
    const ports = new Set<number>();
    const url = await serve((req, res) => {
      ports.add(req.socket.remotePort!);
      res.end("{}");
    });
    for (let i = 0; i < 5; i++) await (await httpFetch(`${url}/api/ps`)).text();
    expect(ports.size).toBe(1);
  });

  it("rejects with the signal's reason when aborted, as fetch does", async () => {
    const url = await serve(() => undefined); // never answers
    const ac = new AbortController();
    const pending = httpFetch(`${url}/api/ps`, { signal: ac.signal });
    const reason = new Error("gave up");
    setTimeout(() => ac.abort(reason), 20);
    await expect(pending).rejects.toBe(reason);
  });

  it("a refused connection is 'unreachable', a reset mid-answer is 'connection lost' (errors.ts)", async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { "Content-Length": "100" });
      res.write("{");
      setTimeout(() => res.socket?.resetAndDestroy(), 10);
    });
    const reset = await httpFetch(`${url}/api/ps`).catch((e: unknown) => e);
    expect(isConnectionLost(reset)).toBe(true);

    const closed = await serve(() => undefined);
    server!.closeAllConnections();
    await new Promise((r) => server!.close(r));
    server = undefined;
    const refused = await httpFetch(`${closed}/api/ps`).catch((e: unknown) => e);
    expect(isUnreachable(refused)).toBe(true);
  });
});
