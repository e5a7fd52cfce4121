import http from "node:http";

/**
 * A `fetch` for OllamaResidency's small requests (/api/ps, the unload and the load calls),
 * on node:http with kept-alive connections. The unload and the reload sit on the path of
 * every image: node:http writes a request to the socket when it is made and hands the
 * answer over in one callback, where the global fetch goes through a dozen promise hops
 * and web streams first, each one waiting behind whatever else the event loop has to do
 * (npm run bench, orchestration: the unload reached Ollama ~3 ms later). It also makes
 * far less garbage, and the /api/ps poll runs every few ms while an unload is expected.
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
