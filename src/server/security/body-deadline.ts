import type { Server } from "node:http";
import type { MiddlewareHandler } from "hono";
import { ApiError } from "../errors.js";
import type { AppEnv } from "../server-context.js";
import { nodeBindings } from "./client-address.js";

/**
 * Slow clients (slow-loris): a connection that sends its request a byte at a time holds a
 * socket and a request slot forever, and a few hundred of them starve everyone else.
 *
 * - Headers: node's own `headersTimeout` (BODY_TIMEOUT_S), checked often enough to matter
 *   (`connectionsCheckingInterval`); node answers 408 and closes.
 * - Body: not node's `requestTimeout`, which is one limit for every route and would cut a
 *   model upload of many gigabytes. Here instead: a body must have arrived whole within
 *   BODY_TIMEOUT_S of its headers, else 408 in the route's error shape and the connection is
 *   closed. Model uploads (the gateway's /api/blobs, /api/create) may take hours on a LAN, so
 *   their rule is a pause: 408 when BODY_TIMEOUT_S pass while DiffuGen waits for the next
 *   chunk. Time spent while DiffuGen itself is not reading (Ollama slow to take the bytes)
 *   does not count against the client.
 */

export interface BodyDeadlineOptions {
  timeoutMs: number;
  /** Whether the request at `path` is a model upload (the pause rule instead of the deadline). */
  isUpload: (method: string, path: string) => boolean;
}

/** The http.Server settings that bound how long headers may take (pass as @hono/node-server's serverOptions). */
export function headerTimeoutServerOptions(timeoutMs: number): { connectionsCheckingInterval: number } {
  // Node checks its header timeout on this interval (default 30 s, so up to twice the limit).
  return { connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(timeoutMs / 4))) };
}

/** Applies the timeouts to a listening server (both listeners do). */
export function applyRequestTimeouts(server: Server, timeoutMs: number): void {
  // No overall request timeout: a generation may take many minutes before its answer, and
  // uploads hours; bodies are bounded by bodyDeadline instead.
  server.requestTimeout = 0;
  server.headersTimeout = timeoutMs;
}

export function bodyDeadline(options: BodyDeadlineOptions): MiddlewareHandler<AppEnv> {
  // A path that two of the app's patterns match (`/generate`, `/generate/*`) passes here twice: one timer.
  const timed = new WeakSet<object>();
  return async (c, next) => {
    const node = nodeBindings(c);
    // Nothing left to wait for: the body arrived with the headers (or there is none), or this
    // request is timed already. Without a node request (app.request in tests) there is no socket to hold.
    if (!node || node.incoming.complete || timed.has(c)) return next();
    const body = c.req.raw.body;
    if (body === null) return next();
    timed.add(c);
    const { incoming, outgoing } = node;
    const upload = options.isUpload(c.req.method, c.req.path);
    const seconds = options.timeoutMs / 1000;
    const expired = () =>
      new ApiError(408, upload ? `No data from the upload for ${seconds} s (BODY_TIMEOUT_S)` : `The request body did not arrive within ${seconds} s (BODY_TIMEOUT_S)`, {
        type: "invalid_request_error",
        code: "body_timeout",
        retryable: false,
      });
    const cutOff = () => {
      // The 408 (if the route still answers) goes out with `Connection: close`, and the socket
      // goes with it; a route that answered already, or does not answer now, loses it at once.
      outgoing.shouldKeepAlive = false;
      if (outgoing.headersSent) {
        incoming.socket?.destroy();
        return;
      }
      const last = setTimeout(() => incoming.socket?.destroy(), 1_000);
      last.unref();
      outgoing.once("close", () => clearTimeout(last));
    };
    const bounded = upload
      ? pauseBoundBody(body, options.timeoutMs, () => incoming.complete, expired, cutOff)
      : deadlineBoundBody(body, options.timeoutMs, () => incoming.complete, expired, cutOff);
    c.req.raw = new Request(c.req.raw, { body: bounded, duplex: "half" } as RequestInit);
    return next();
  };
}

/** Errors with `expired()` unless the body has arrived whole (`arrived()`) within `timeoutMs`. */
function deadlineBoundBody(
  source: ReadableStream<Uint8Array>,
  timeoutMs: number,
  arrived: () => boolean,
  expired: () => Error,
  cutOff: () => void,
): ReadableStream<Uint8Array> {
  let fail: ((err: Error) => void) | undefined;
  const timer = setTimeout(() => {
    if (arrived()) return; // here in full; reading it is up to us
    fail?.(expired());
    cutOff();
  }, timeoutMs);
  timer.unref();
  return relay(source, {
    onStart: (failWith) => (fail = failWith),
    onEnd: () => clearTimeout(timer),
  });
}

/** Errors with `expired()` when a read waits `timeoutMs` for the client's next chunk. */
function pauseBoundBody(
  source: ReadableStream<Uint8Array>,
  timeoutMs: number,
  arrived: () => boolean,
  expired: () => Error,
  cutOff: () => void,
): ReadableStream<Uint8Array> {
  let fail: ((err: Error) => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  return relay(source, {
    onStart: (failWith) => (fail = failWith),
    // Only while we wait for the client: backpressure from where the bytes go is not its fault.
    onReadStart: () => {
      timer = setTimeout(() => {
        if (arrived()) return;
        fail?.(expired());
        cutOff();
      }, timeoutMs);
      timer.unref();
    },
    onReadEnd: () => clearTimeout(timer),
    onEnd: () => clearTimeout(timer),
  });
}

interface RelayHooks {
  /** Hands over the function that errors the relayed stream (once). */
  onStart: (fail: (err: Error) => void) => void;
  onReadStart?: () => void;
  onReadEnd?: () => void;
  /** The source ended, failed, or the reader cancelled. */
  onEnd: () => void;
}

/**
 * `source`, chunk by chunk, which can be failed from outside. The source is never cancelled
 * when failed so: cancelling a node request before it is complete destroys its socket, and
 * the route's 408 must still go out on it.
 */
function relay(source: ReadableStream<Uint8Array>, hooks: RelayHooks): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let over = false;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      hooks.onStart((err) => {
        if (over) return;
        over = true;
        hooks.onEnd();
        controller.error(err);
      });
    },
    async pull(controller) {
      hooks.onReadStart?.();
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (err) {
        hooks.onReadEnd?.();
        if (over) return;
        over = true;
        hooks.onEnd();
        controller.error(err);
        return;
      }
      hooks.onReadEnd?.();
      if (over) return;
      if (chunk.done) {
        over = true;
        hooks.onEnd();
        controller.close();
      } else {
        controller.enqueue(chunk.value);
      }
    },
    async cancel(reason) {
      if (!over) {
        over = true;
        hooks.onEnd();
      }
      await reader.cancel(reason);
    },
  });
}
