import http from "node:http";

/**
 * HTTP as a hostile client speaks it: the path goes out byte for byte (fetch would
 * normalise `/images/../x` and refuse NUL), the body is any bytes, optionally chunked with
 * no Content-Length, and a server that answers before reading the whole body (413) is
 * fine. Always resolves with what came back, or rejects when nothing did in time.
 */

export interface RawRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string | undefined;
  /** Send the body in pieces with Transfer-Encoding: chunked (no Content-Length). */
  chunked?: boolean;
  timeoutMs?: number;
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: unknown;
}

export function rawRequest(baseUrl: string, request: RawRequest): Promise<RawResponse> {
  const url = new URL(baseUrl);
  const body = request.body === undefined ? undefined : Buffer.isBuffer(request.body) ? request.body : Buffer.from(request.body, "utf8");
  const headers: Record<string, string> = { ...request.headers };
  if (body !== undefined && !request.chunked) headers["Content-Length"] = String(body.length);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(
      { host: url.hostname, port: url.port, method: request.method, path: request.path, headers, agent: false },
      (res) => {
        answered = true;
        const parts: Buffer[] = [];
        res.on("data", (chunk: Buffer) => parts.push(chunk));
        res.on("error", reject);
        res.on("end", () => {
          clearTimeout(timer);
          const text = Buffer.concat(parts).toString("utf8");
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    const timer = setTimeout(() => {
      req.destroy(new Error(`no answer to ${request.method} ${request.path} within ${request.timeoutMs ?? 15_000} ms`));
    }, request.timeoutMs ?? 15_000);
    req.on("error", (err) => {
      // The server may answer (413) and close while the rest of a big body is still going out.
      if (!answered) {
        clearTimeout(timer);
        reject(err);
      }
    });
    if (body !== undefined && request.chunked) {
      const piece = Math.max(1, Math.ceil(body.length / 4));
      for (let i = 0; i < body.length; i += piece) req.write(body.subarray(i, i + piece));
    } else if (body !== undefined) {
      req.write(body);
    }
    req.end();
  });
}
