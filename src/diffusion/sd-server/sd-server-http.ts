import http from "node:http";

/**
 * The few HTTP calls DiffuGen makes to its own sd-server on 127.0.0.1. node:http rather
 * than fetch: fetch gives up on a response whose headers take over 300 s (undici's
 * headersTimeout), and sd-server sends its headers only once the image is done. The
 * generation's own deadline (GENERATION_TIMEOUT_S) is kept by the backend, which ends
 * the process; a request is never retried here, since sd-server cannot be told to stop.
 */

export interface SdServerAnswer {
  status: number;
  contentType: string | undefined;
  text: string;
}

/**
 * The connection failed or broke off before a whole answer came: refused (not listening
 * yet, or gone), reset (sd-server died mid-request: it has no signal handler, so a crash
 * or a kill surfaces as a reset), or aborted by our own signal.
 */
export class SdServerConnectionError extends Error {
  constructor(
    readonly code: string | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "SdServerConnectionError";
  }
}

export function sdServerCall(
  port: number,
  method: "GET" | "POST",
  path: string,
  options: { body?: unknown; signal?: AbortSignal | undefined } = {},
): Promise<SdServerAnswer> {
  const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        agent: false, // one connection per call: sd-server's httplib closes idle ones anyway
        headers: payload ? { "content-type": "application/json", "content-length": payload.length } : {},
        signal: options.signal,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            contentType: response.headers["content-type"],
            text: Buffer.concat(chunks).toString("utf8"),
          }),
        );
        response.on("error", (err) => reject(connectionError(err)));
        response.on("aborted", () => reject(new SdServerConnectionError("ECONNRESET", "sd-server broke off its answer")));
      },
    );
    request.on("error", (err) => reject(connectionError(err)));
    request.end(payload);
  });
}

function connectionError(err: unknown): SdServerConnectionError {
  const code = (err as NodeJS.ErrnoException).code;
  const message = err instanceof Error ? err.message : String(err);
  return new SdServerConnectionError(code, `sd-server connection failed: ${message}`, { cause: err });
}
