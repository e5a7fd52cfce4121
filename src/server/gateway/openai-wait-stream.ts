import type { GpuLease } from "../../gpu/index.js";
import { leaseBoundBody } from "./lease-bound-body.js";

/**
 * The body of a streaming chat that has to wait for the GPU: OpenWebUI status chunks while it
 * waits (refreshed as the queue moves), one that settles the status once the lease is held,
 * then Ollama's own stream relayed byte for byte. The 200 and the SSE headers are out before
 * Ollama is asked, so anything that goes wrong later (the call refused, Ollama down or
 * answering an error) becomes an SSE error chunk in OpenAI's shape, then `data: [DONE]`.
 *
 * The lease is held until Ollama's stream has ended or the client has gone (leaseBoundBody);
 * on every other way out it is given back here.
 */

export interface OpenAiErrorObject {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

export interface WaitingStreamOptions {
  /** The lease being waited for (its acquire got `clientGone` as signal). */
  granted: Promise<GpuLease>;
  /** Woken by the scheduler's events for this call: the status line is redrawn. */
  wakeup: Wakeup;
  /** The status line now, and the line that settles it. */
  describe(): string;
  describeOver(waitedMs: number): string;
  /** A status chunk (chat-completions' statusChunk) as it goes on the wire. */
  statusChunk(description: string, done: boolean): unknown;
  /** Calls Ollama once the lease is held; rejects only when Ollama cannot be reached. */
  call(signal: AbortSignal): Promise<Response>;
  /** A failure to get the lease or to reach Ollama, as OpenAI's error object. */
  failure(err: unknown): OpenAiErrorObject;
  /** Aborts when the client goes away. */
  clientGone: AbortSignal;
  /** The stream was cancelled (the client went away as the response saw it). */
  onCancel(): void;
  /** How often the line is redrawn (the estimate counts down; a batch moves on). */
  refreshMs: number;
  /** A comment line after this long without anything sent, so proxies keep the stream open. */
  heartbeatMs: number;
}

export const sseHeaders = {
  "Content-Type": "text/event-stream",
  "Cache-Control": "no-cache, no-transform",
  "X-Accel-Buffering": "no",
} as const;

/** A one-slot wake-up call: wake() before wait() is not lost. */
export class Wakeup {
  #resolve: (() => void) | undefined;
  #pending = false;

  wake(): void {
    const resolve = this.#resolve;
    this.#resolve = undefined;
    if (resolve) resolve();
    else this.#pending = true;
  }

  wait(): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => (this.#resolve = resolve));
  }
}

const done = "data: [DONE]\n\n";
const sse = (data: unknown) => `data: ${JSON.stringify(data)}\n\n`;

export function waitingStream(options: WaitingStreamOptions): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  const frames = streamFrames(options);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = await frames.next();
        if (next.done) controller.close();
        else controller.enqueue(typeof next.value === "string" ? encoder.encode(next.value) : next.value);
      } catch (err) {
        controller.error(err);
      }
    },
    async cancel() {
      options.onCancel();
      await frames.return(undefined);
    },
  });
}

async function* streamFrames(o: WaitingStreamOptions): AsyncGenerator<string | Uint8Array> {
  const waitStarted = Date.now();
  let outcome: { lease: GpuLease } | { error: unknown } | undefined;
  let finished = false;
  void o.granted.then(
    (lease) => {
      // Granted after the stream was over (the client left as the grant came): give it back.
      if (finished) void lease.release();
      else outcome = { lease };
      o.wakeup.wake();
    },
    (error: unknown) => {
      outcome = { error };
      o.wakeup.wake();
    },
  );
  const onGone = () => o.wakeup.wake();
  o.clientGone.addEventListener("abort", onGone, { once: true });
  const ticker = setInterval(() => o.wakeup.wake(), o.refreshMs);
  ticker.unref?.();
  /** Whether the lease went on to leaseBoundBody, which gives it back from then on. */
  let handedOver = false;

  try {
    let line = o.describe();
    let sentAt = Date.now();
    yield sse(o.statusChunk(line, false));
    while (outcome === undefined && !o.clientGone.aborted) {
      await o.wakeup.wait();
      if (outcome !== undefined || o.clientGone.aborted) break;
      const next = o.describe();
      if (next !== line) {
        line = next;
        sentAt = Date.now();
        yield sse(o.statusChunk(line, false));
      } else if (Date.now() - sentAt >= o.heartbeatMs) {
        sentAt = Date.now();
        yield ": heartbeat\n\n";
      }
    }
    clearInterval(ticker);
    if (o.clientGone.aborted || outcome === undefined) return;
    if ("error" in outcome) {
      yield sse(o.statusChunk("Stopped waiting for the GPU", true));
      yield sse({ error: o.failure(outcome.error) });
      yield done;
      return;
    }

    const lease = outcome.lease;
    yield sse(o.statusChunk(o.describeOver(Date.now() - waitStarted), true));
    let upstream: Response;
    try {
      upstream = await o.call(o.clientGone);
    } catch (err) {
      if (o.clientGone.aborted) return;
      yield sse({ error: o.failure(err) });
      yield done;
      return;
    }
    handedOver = true;
    const body = leaseBoundBody(upstream.body, lease, o.clientGone);
    if (!upstream.ok) {
      // Ollama's error (read whole: it is one small JSON object), as the stream's last event.
      const text = body === null ? "" : await new Response(body).text();
      yield sse({ error: upstreamError(upstream.status, text) });
      yield done;
      return;
    }
    if (body === null) return;
    const reader = body.getReader();
    try {
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) return;
        yield chunk.value;
      }
    } finally {
      await reader.cancel().catch(() => undefined);
    }
  } finally {
    finished = true;
    clearInterval(ticker);
    o.clientGone.removeEventListener("abort", onGone);
    if (!handedOver && outcome !== undefined && "lease" in outcome) await outcome.lease.release();
  }
}

/** Ollama's OpenAI error object when that is what it sent; else one made of its status and text. */
export function upstreamError(status: number, text: string): OpenAiErrorObject {
  try {
    const parsed = JSON.parse(text) as { error?: unknown };
    const error = parsed.error;
    if (error !== null && typeof error === "object" && typeof (error as { message?: unknown }).message === "string") {
      const e = error as Partial<OpenAiErrorObject>;
      return { message: e.message!, type: e.type ?? "server_error", param: e.param ?? null, code: e.code ?? null };
    }
    if (typeof error === "string") return { message: error, type: status >= 500 ? "server_error" : "invalid_request_error", param: null, code: null };
  } catch {
    // not JSON: the text itself says what happened
  }
  return { message: text.trim() || `Ollama answered HTTP ${status}`, type: status >= 500 ? "server_error" : "invalid_request_error", param: null, code: null };
}
