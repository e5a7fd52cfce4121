/**
 * The second listener (OLLAMA_GATEWAY_PORT): Ollama's API at the root of its own port, for
 * clients that take only a host and port (`OLLAMA_HOST=127.0.0.1:11435 ollama run ...`).
 * It is the same app as the main listener's, every path moved under the gateway's mount
 * (`/api/tags` → `/ollama/api/tags`), so key, limits, gate, metrics and logs are the same.
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { applyRequestTimeouts, headerTimeoutServerOptions } from "../security/body-deadline.js";

type Fetch = (request: Request, env: unknown) => Response | Promise<Response>;

/** `fetch` as seen from the root: every path is the one under `mountPath`. */
export function atRootOf(fetch: Fetch, mountPath: string): Fetch {
  return (request, env) => {
    const url = new URL(request.url);
    url.pathname = `${mountPath}${url.pathname}`;
    const hasBody = request.method !== "GET" && request.method !== "HEAD";
    const moved = new Request(url, {
      method: request.method,
      headers: request.headers,
      body: hasBody ? request.body : null,
      // The client's signal: aborts when it goes away, as on the main listener.
      signal: request.signal,
      ...(hasBody ? { duplex: "half" } : {}),
    } as RequestInit);
    return fetch(moved, env);
  };
}

/** Why the second listener could not start, in words naming its variables. */
export class GatewayListenError extends Error {
  readonly listener = "ollama-gateway";
  constructor(
    readonly code: string | undefined,
    readonly host: string,
    readonly port: number,
    options?: { cause?: unknown },
  ) {
    super(`cannot listen on ${host}:${port} for the Ollama gateway (${code ?? "error"}); set OLLAMA_GATEWAY_PORT or OLLAMA_GATEWAY_HOST`, options);
    this.name = "GatewayListenError";
  }
}

/** `timeoutMs`: BODY_TIMEOUT_S, for the headers as on the main listener (bodies: the app's own rule). */
export async function listenOllamaGateway(fetch: Fetch, port: number, host: string, timeoutMs = 30_000): Promise<{ server: Server; port: number; url: string }> {
  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch, port, hostname: host, serverOptions: headerTimeoutServerOptions(timeoutMs) }, () => resolve(s as Server)) as Server;
    s.once("error", (err: NodeJS.ErrnoException) => reject(new GatewayListenError(err.code, host, port, { cause: err })));
  });
  // As on the main listener: a generation may take long before its first byte.
  applyRequestTimeouts(server, timeoutMs);
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return { server, port: address.port, url: `http://${shownHost}:${address.port}` };
}

const loopbackNames = new Set(["localhost", "127.0.0.1", "[::1]", "::1", "0.0.0.0", "[::]"]);

/**
 * Whether OLLAMA_BASE_URL leads back to this server's own gateway (its second port, or
 * the main port's `/ollama`): every gated call would then wait for a lease held by itself.
 */
export function pointsAtGateway(baseUrl: string, listeners: { host: string; port: number; mountPath?: string }[]): boolean {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    return false;
  }
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  const hostname = url.hostname.toLowerCase();
  return listeners.some((l) => {
    if (l.port !== port) return false;
    if (!loopbackNames.has(hostname) && hostname !== l.host.toLowerCase()) return false;
    return l.mountPath === undefined || url.pathname === l.mountPath || url.pathname.startsWith(`${l.mountPath}/`);
  });
}
