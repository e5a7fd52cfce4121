import type { Context, MiddlewareHandler } from "hono";
import { ApiError } from "../errors.js";
import type { AppEnv } from "../server-context.js";
import { clientAddress, nodeBindings } from "./client-address.js";

/**
 * MAX_STREAMS_PER_CLIENT: how many streaming answers (SSE and NDJSON: image and chat streams,
 * the graph stream, a job's events, the gateway's relays) one client address may have open
 * at once. A stream holds a connection, memory and often a GPU lease for minutes; without a
 * bound, one client (a script gone wrong, a stranger with the key) opens hundreds. Beyond it
 * the request is refused with 429 and Retry-After, before any job starts or any LLM call is
 * made, in the route's own error shape.
 *
 * A route that is about to stream calls claimStream(c); the slot goes back when the response
 * is over (sent, failed, or the client gone), whatever happened in between.
 */

/** How soon a refused client may try again: streams end in seconds to minutes. */
const retryAfterSeconds = 5;

/** The per-address counts. 0 = no limit. */
export class StreamSlots {
  readonly #open = new Map<string, number>();

  constructor(readonly maxPerClient: number) {}

  /** Takes one of `client`'s slots; its release (callable more than once), or undefined when all are taken. */
  take(client: string): (() => void) | undefined {
    const open = this.#open.get(client) ?? 0;
    if (this.maxPerClient > 0 && open >= this.maxPerClient) return undefined;
    this.#open.set(client, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#open.get(client) ?? 1) - 1;
      if (left <= 0) this.#open.delete(client);
      else this.#open.set(client, left);
    };
  }

  /** Streams `client` has open now. */
  openFor(client: string): number {
    return this.#open.get(client) ?? 0;
  }
}

/** Gives each request its claimStream(); what it claims is given back when the response is over. */
export function streamSlotsMiddleware(slots: StreamSlots): MiddlewareHandler<AppEnv> {
  // A path that two of the app's patterns match (`/generate`, `/generate/*`) passes here twice.
  const seen = new WeakSet<object>();
  return async (c, next) => {
    if (seen.has(c)) return next();
    seen.add(c);
    let release: (() => void) | undefined;
    const node = nodeBindings(c);
    c.set("claimStream", () => {
      if (release) return; // one response, one stream
      const client = clientAddress(c);
      const taken = slots.take(client);
      if (!taken) throw tooManyStreams(slots.maxPerClient);
      release = taken;
      // On node: when the response is over, whichever way (its last byte written, or the connection gone).
      node?.outgoing.once("close", taken);
    });
    await next();
    if (!release || node) return;
    // No node response to watch (app.request in tests): the body's end is the response's.
    const body = c.res.body;
    if (body === null) release();
    else c.res = new Response(releasingAtEnd(body, release), c.res);
  };
}

/** Claims a stream slot for this request's client; throws the 429 when it has none left. */
export function claimStream(c: Context<AppEnv>): void {
  c.var.claimStream?.();
}

function tooManyStreams(max: number): ApiError {
  return new ApiError(429, `Too many streaming answers open from your address (${max}, MAX_STREAMS_PER_CLIENT): wait for one to end`, {
    type: "rate_limit_error",
    code: "too_many_streams",
    retryAfterSeconds,
    retryable: true,
  });
}

function releasingAtEnd(body: ReadableStream<Uint8Array>, release: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          release();
          controller.close();
        } else controller.enqueue(value);
      } catch (err) {
        release();
        controller.error(err);
      }
    },
    async cancel(reason) {
      release();
      await reader.cancel(reason);
    },
  });
}
