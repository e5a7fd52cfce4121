import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { GpuLease, ReleaseOutcome } from "../../src/gpu/index.js";
import { leaseBoundBody, type BodyEnd } from "../../src/server/gateway/lease-bound-body.js";
import { callOllama, upstreamUrl } from "../../src/server/gateway/upstream.js";

/**
 * The relay itself, against a plain HTTP server standing in for Ollama: what is sent on
 * (headers, bytes), where (OLLAMA_BASE_URL's own path kept), and that a stream is passed on
 * chunk by chunk: the server writes its next chunk only once the client has read the last,
 * so a relay that held anything back would never finish.
 */

const servers: http.Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

async function serve(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function fakeLease(): GpuLease & { releases: number } {
  const lease = {
    jobId: "ollama-test",
    phase: "llm" as const,
    grantedAt: 0,
    waitedMs: 0,
    releases: 0,
    get released() {
      return lease.releases > 0;
    },
    release(): Promise<ReleaseOutcome> {
      lease.releases += 1;
      return Promise.resolve({ kind: "none" });
    },
    [Symbol.asyncDispose]: () => Promise.resolve(),
  };
  return lease;
}

describe("callOllama", () => {
  it("sends on the body's bytes and end-to-end headers, never DiffuGen's credentials, cookies or the browser's origin", async () => {
    let seen: { method?: string; url?: string; headers: http.IncomingHttpHeaders; body: string } | undefined;
    const base = await serve((req, res) => {
      const parts: Buffer[] = [];
      req.on("data", (c: Buffer) => parts.push(c));
      req.on("end", () => {
        seen = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(parts).toString("utf8") };
        res.writeHead(200, { "Content-Type": "application/json", "X-Ollama": "yes" }).end('{"ok":true}');
      });
    });
    const headers = new Headers({
      "Content-Type": "application/json",
      "User-Agent": "ollama-js/0.6.4",
      Authorization: "Bearer secret",
      "X-API-Key": "secret",
      Cookie: "session=1",
      Origin: "http://ui.example",
      Host: "diffugen.lan",
    });
    const body = '{"model":"qwen2.5:3b",  "messages":[]}';
    const res = await callOllama(`${base}/`, { method: "POST", path: "/api/chat?x=1", headers, body, signal: new AbortController().signal });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-ollama")).toBe("yes");
    expect(await res.text()).toBe('{"ok":true}');
    expect(seen).toMatchObject({ method: "POST", url: "/api/chat?x=1", body });
    expect(seen!.headers["content-type"]).toBe("application/json");
    expect(seen!.headers["user-agent"]).toBe("ollama-js/0.6.4");
    for (const name of ["authorization", "x-api-key", "cookie", "origin"]) expect(seen!.headers[name], name).toBeUndefined();
    expect(seen!.headers.host).toBe(new URL(base).host);
  });

  it("keeps OLLAMA_BASE_URL's own path, and a path can never leave for another host", () => {
    expect(upstreamUrl("http://127.0.0.1:11434", "/api/tags").href).toBe("http://127.0.0.1:11434/api/tags");
    expect(upstreamUrl("http://proxy.lan/ollama/", "/api/chat?a=b").href).toBe("http://proxy.lan/ollama/api/chat?a=b");
    expect(upstreamUrl("http://127.0.0.1:11434", "//evil.example/x").host).toBe("127.0.0.1:11434");
  });

  it("passes a stream on chunk by chunk: nothing is held back", async () => {
    let next: (() => void) | undefined;
    const base = await serve((_req, res) => {
      res.writeHead(200, { "Content-Type": "application/x-ndjson" });
      let i = 0;
      const write = () => {
        i += 1;
        if (i > 5) return res.end();
        res.write(`{"i":${i}}\n`);
        next = write; // the next chunk only once the client has read this one
      };
      write();
    });
    const res = await callOllama(base, { method: "POST", path: "/api/chat", headers: new Headers(), body: "{}", signal: new AbortController().signal });
    const lease = fakeLease();
    const relayed = leaseBoundBody(res.body, lease, new AbortController().signal)!;
    const reader = relayed.getReader();
    const decoder = new TextDecoder();
    const got: string[] = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      got.push(decoder.decode(value));
      expect(lease.released).toBe(false);
      next?.();
    }
    expect(got.join("")).toBe('{"i":1}\n{"i":2}\n{"i":3}\n{"i":4}\n{"i":5}\n');
    expect(lease.releases).toBe(1);
  });

  it("rejects when Ollama cannot be reached", async () => {
    const base = await serve(() => undefined);
    const closed = servers.pop()!;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await expect(callOllama(base, { method: "GET", path: "/api/tags", headers: new Headers(), body: null, signal: new AbortController().signal })).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });
});

describe("leaseBoundBody", () => {
  it("gives the lease back once when the client goes mid-stream, and aborts the upstream read", async () => {
    let upstreamClosed = false;
    const base = await serve((req, res) => {
      res.writeHead(200, { "Content-Type": "application/x-ndjson" });
      res.write('{"first":true}\n');
      res.on("close", () => (upstreamClosed = true));
      req.resume();
    });
    const client = new AbortController();
    const res = await callOllama(base, { method: "POST", path: "/api/chat", headers: new Headers(), body: "{}", signal: client.signal });
    const lease = fakeLease();
    const ends: BodyEnd[] = [];
    const relayed = leaseBoundBody(res.body, lease, client.signal, (how) => ends.push(how))!;
    const reader = relayed.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('{"first":true}\n');
    client.abort();
    await reader.cancel();
    expect(lease.releases).toBe(1);
    expect(ends).toEqual(["client_gone"]);
    const deadline = Date.now() + 5_000;
    while (!upstreamClosed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(upstreamClosed).toBe(true);
  });

  it("gives the lease back when the upstream stream breaks", async () => {
    const base = await serve((_req, res) => {
      res.writeHead(200, { "Content-Type": "application/x-ndjson" });
      res.write('{"first":true}\n', () => res.socket?.destroy());
    });
    const res = await callOllama(base, { method: "POST", path: "/api/chat", headers: new Headers(), body: "{}", signal: new AbortController().signal });
    const lease = fakeLease();
    const ends: BodyEnd[] = [];
    const relayed = leaseBoundBody(res.body, lease, new AbortController().signal, (how) => ends.push(how))!;
    await expect(new Response(relayed).text()).rejects.toThrow();
    expect(lease.releases).toBe(1);
    expect(ends).toEqual(["failed"]);
  });
});
