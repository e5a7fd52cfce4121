import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local HTTP file server for download tests (127.0.0.1, port 0): serves Buffers by path,
 * honours `Range: bytes=N-` / `bytes=N-M` (206, or 416 past the end), and can misbehave on
 * purpose per request: drop the connection halfway, ignore the range (200), answer slowly,
 * answer with a status, redirect, or demand a bearer token. Records every request.
 */

export type Behaviour = "normal" | "drop-half" | "ignore-range" | "slow" | { status: number } | { redirect: string };

export interface Route {
  body?: Buffer;
  /** How to answer the attempt-th request to this path (from 1). Default: normal. */
  behave?: (attempt: number, req: http.IncomingMessage) => Behaviour;
  /** 401 unless `Authorization: Bearer <token>`. */
  bearer?: string;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
}

export interface FileServer {
  url: string;
  requests: RecordedRequest[];
  route(path: string, route: Route): void;
  requestsTo(path: string): RecordedRequest[];
  close(): Promise<void>;
}

export async function startFileServer(): Promise<FileServer> {
  const routes = new Map<string, Route>();
  const attempts = new Map<string, number>();
  const requests: RecordedRequest[] = [];

  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    requests.push({ method: req.method ?? "GET", path, headers: req.headers });
    const attempt = (attempts.get(path) ?? 0) + 1;
    attempts.set(path, attempt);
    const route = routes.get(path);
    if (!route) {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("not found");
      return;
    }
    if (route.bearer !== undefined && req.headers.authorization !== `Bearer ${route.bearer}`) {
      res.writeHead(401, { "Content-Type": "text/plain" }).end("Access to this repository is restricted.");
      return;
    }
    const behaviour = route.behave?.(attempt, req) ?? "normal";
    if (typeof behaviour === "object" && "status" in behaviour) {
      res.writeHead(behaviour.status, { "Content-Type": "text/plain" }).end(`status ${behaviour.status}`);
      return;
    }
    if (typeof behaviour === "object" && "redirect" in behaviour) {
      res.writeHead(302, { Location: behaviour.redirect }).end();
      return;
    }
    const body = route.body ?? Buffer.alloc(0);
    let start = 0;
    let end = body.length - 1;
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    if (range && behaviour !== "ignore-range") {
      start = Number(range[1]);
      if (range[2]) end = Math.min(Number(range[2]), body.length - 1);
      if (start >= body.length) {
        res.writeHead(416, { "Content-Range": `bytes */${body.length}` }).end();
        return;
      }
      status = 206;
    }
    const slice = body.subarray(start, end + 1);
    const headers: http.OutgoingHttpHeaders = {
      "Content-Type": "application/octet-stream",
      "Content-Length": slice.length,
      "Accept-Ranges": "bytes",
    };
    if (status === 206) headers["Content-Range"] = `bytes ${start}-${end}/${body.length}`;
    res.writeHead(status, headers);
    if (behaviour === "drop-half") {
      res.write(slice.subarray(0, Math.floor(slice.length / 2)), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    if (behaviour === "slow") {
      let offset = 0;
      const tick = () => {
        if (res.destroyed) return;
        if (offset >= slice.length) return void res.end();
        res.write(slice.subarray(offset, offset + 16 * 1024));
        offset += 16 * 1024;
        setTimeout(tick, 15);
      };
      tick();
      return;
    }
    res.end(slice);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    route: (path, route) => void routes.set(path, route),
    requestsTo: (path) => requests.filter((r) => r.path === path),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
