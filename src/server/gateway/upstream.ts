/**
 * One request to Ollama, relayed as it came: method, path, query, the headers that mean
 * something end to end, the body. What comes back is relayed the same way: its status,
 * its headers and its body as a stream of the bytes Ollama wrote, each chunk passed on as
 * it arrives (NDJSON and SSE streams are never buffered, nothing is decoded).
 *
 * Sent with node:http rather than fetch: fetch (undici) gives up on an answer whose headers
 * take more than 300 s, and a non-streaming generation on a slow box takes that long
 * before Ollama writes anything. Here nothing times out; the caller's signal ends a call.
 */
import http from "node:http";
import https from "node:https";
import { Readable } from "node:stream";

export interface UpstreamRequest {
  method: string;
  /** The path on Ollama, with its query: `/api/chat`, `/v1/models?x=1`. */
  path: string;
  headers: Headers;
  /** The body as read (a gated call's JSON), a stream (a blob upload), or none. */
  body: string | Uint8Array | ReadableStream<Uint8Array> | null;
  /** Aborts the upstream request, before or while its answer streams (the client went away, or shutdown). */
  signal: AbortSignal;
}

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) and the ones that describe our own connection or
 * credentials: never sent on. `accept-encoding` is ours too (we ask for identity, so a
 * dialect that rewrites the stream gets plain bytes). `origin` as well: DiffuGen's CORS
 * policy has already admitted the caller, and Ollama, which only allows its own origins
 * (OLLAMA_ORIGINS), would answer a browser's call 403.
 */
const notForwarded = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "expect",
  "host",
  "content-length",
  "accept-encoding",
  "authorization",
  "x-api-key",
  "cookie",
  "origin",
]);

/** What of the response's headers stays between Ollama and us (the body bytes are relayed as they came). */
const notRelayed = new Set(["connection", "keep-alive", "transfer-encoding", "trailer", "upgrade"]);

export function forwardableHeaders(headers: Headers, drop: ReadonlySet<string> = notForwarded): Headers {
  const out = new Headers();
  headers.forEach((value, name) => {
    if (!drop.has(name.toLowerCase())) out.append(name, value);
  });
  return out;
}

/**
 * Where `path` is on Ollama: appended to OLLAMA_BASE_URL, whose own path (a reverse proxy's
 * prefix) is kept. Never resolved as a URL reference: `//host/x` must not leave for `host`.
 */
export function upstreamUrl(baseUrl: string, path: string): URL {
  const base = new URL(baseUrl);
  const url = new URL(base.origin);
  const [pathname = "", query] = splitOnce(path, "?");
  url.pathname = `${base.pathname.replace(/\/+$/, "")}/${pathname.replace(/^\/+/, "")}`;
  if (query !== undefined) url.search = `?${query}`;
  return url;
}

/** Kept-alive connections to Ollama: a gated call pays no TCP handshake. */
const agents = {
  "http:": new http.Agent({ keepAlive: true }),
  "https:": new https.Agent({ keepAlive: true }),
};

/** Statuses whose response has no body (Response refuses one). */
const nullBodyStatuses = new Set([101, 103, 204, 205, 304]);

/** Sends the request to Ollama at `baseUrl`; rejects only when Ollama cannot be reached (or `signal` fired first). */
export function callOllama(baseUrl: string, request: UpstreamRequest): Promise<Response> {
  const url = upstreamUrl(baseUrl, request.path);
  const { signal } = request;
  return new Promise<Response>((resolve, reject) => {
    if (signal.aborted) {
      reject(abortError(signal));
      return;
    }
    // A plain object, as node:http takes it (Headers iterate lower-cased, duplicates joined).
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => {
      if (!notForwarded.has(name)) headers[name] = value;
    });
    headers["accept-encoding"] = "identity";
    const body = request.method === "GET" || request.method === "HEAD" ? null : request.body;
    if (typeof body === "string" || body instanceof Uint8Array) {
      headers["content-length"] = String(typeof body === "string" ? Buffer.byteLength(body) : body.byteLength);
    } else if (body !== null) {
      // A streamed upload keeps its declared length when it had one: the bytes are the same.
      const length = request.headers.get("content-length");
      if (length !== null && /^\d+$/.test(length)) headers["content-length"] = length;
    }
    const lib = url.protocol === "https:" ? https : http;
    const agent = url.protocol === "https:" ? agents["https:"] : agents["http:"];
    const req = lib.request(url, { method: request.method, headers, agent, signal });
    req.once("error", reject);
    req.once("response", (res) => {
      req.off("error", reject);
      // Later request errors (an abort while the answer streams) surface on the response stream.
      req.on("error", (err) => res.destroy(err));
      const status = res.statusCode ?? 502;
      const relayed = new Headers();
      for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
        const name = res.rawHeaders[i]!;
        if (!notRelayed.has(name.toLowerCase())) relayed.append(name, res.rawHeaders[i + 1]!);
      }
      const noBody = request.method === "HEAD" || nullBodyStatuses.has(status);
      if (noBody) res.resume();
      try {
        resolve(
          new Response(noBody ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), {
            status,
            statusText: res.statusMessage ?? "",
            headers: relayed,
          }),
        );
      } catch (err) {
        // A status Response cannot carry (below 200): not something Ollama sends.
        res.destroy();
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
    if (body === null) req.end();
    else if (typeof body === "string" || body instanceof Uint8Array) req.end(body);
    else {
      const upload = Readable.fromWeb(body as import("node:stream/web").ReadableStream<Uint8Array>);
      upload.once("error", (err) => req.destroy(err));
      upload.pipe(req);
    }
  });
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new DOMException(typeof reason === "string" ? reason : "This operation was aborted", "AbortError");
}

function splitOnce(text: string, separator: string): [string, string | undefined] {
  const at = text.indexOf(separator);
  return at < 0 ? [text, undefined] : [text.slice(0, at), text.slice(at + 1)];
}
