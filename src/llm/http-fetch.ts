import http from "node:http";

/**
 * A `fetch` for OllamaResidency's /api/ps polls and unload calls, on node:http with
 * kept-alive connections. While an unload is expected /api/ps is polled every few ms;
 * through node:http a poll costs about half the CPU of the global fetch (~0.2 ms against
 * ~0.4 ms a round trip here) and far less garbage, and a smaller heap is a cheaper fork of
 * this process when sd-cli is spawned right after (npm run bench, orchestration: the
 * server's RSS 109 MiB instead of 143, the fork 3.0 ms instead of 3.7).
 *
 * Its one drawback: node:http writes a request on process.nextTick, after every promise job
 * already queued, where fetch writes it within its own promise chain. For a request made in
 * the middle of a run's work (the LLM's reload while the image is being answered) fetch goes
 * out sooner, so the reload keeps the global fetch.
 *
 * Only what those calls need: the answer is read whole (no streaming), http: only (https:
 * goes to the global fetch). Errors are node's own (ECONNREFUSED, ECONNRESET...), which
 * errors.ts classifies like undici's; an aborted request rejects with the signal's reason,
 * as fetch does.
 */

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

export const httpFetch: typeof fetch = (input, init) => {
  const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url);
  if (url.protocol !== "http:") return fetch(input, init);
  const signal = init?.signal ?? undefined;
  return new Promise<Response>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const fail = (err: unknown) => {
      signal?.removeEventListener("abort", onAbort);
      reject(signal?.aborted ? signal.reason : err);
    };
    const req = http.request(url, { method: init?.method ?? "GET", headers: headersOf(init?.headers), agent }, (res) => {
      const parts: Buffer[] = [];
      res.on("data", (chunk: Buffer) => parts.push(chunk));
      res.on("error", fail);
      res.on("aborted", () => fail(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" })));
      res.on("end", () => {
        signal?.removeEventListener("abort", onAbort);
        const status = res.statusCode ?? 0;
        const body = status === 204 || status === 304 ? null : Buffer.concat(parts);
        resolve(new Response(body, { status, statusText: res.statusMessage ?? "", headers: flatHeaders(res.headers) }));
      });
    });
    const onAbort = () => req.destroy(signal?.reason instanceof Error ? signal.reason : new Error("aborted"));
    signal?.addEventListener("abort", onAbort, { once: true });
    req.on("error", fail);
    const body = init?.body;
    if (body === undefined || body === null) req.end();
    else if (typeof body === "string" || body instanceof Uint8Array) req.end(body);
    else {
      req.destroy();
      fail(new TypeError("httpFetch sends only string or byte bodies"));
    }
  });
};

function headersOf(headers: RequestInit["headers"]): Record<string, string> {
  if (headers === undefined) return {};
  return Object.fromEntries(new Headers(headers).entries());
}

function flatHeaders(headers: http.IncomingHttpHeaders): [string, string][] {
  const out: [string, string][] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    out.push([name, Array.isArray(value) ? value.join(", ") : value]);
  }
  return out;
}
