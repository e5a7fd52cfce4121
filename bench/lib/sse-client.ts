/**
 * An event-stream client that notes when each event arrived: the body is read chunk by
 * chunk as the socket delivers it and every complete `data:` message is stamped with the
 * moment its last chunk was read (stats.ts epochNow, the clock the sd-cli double's
 * FAKE_SD_TIMESTAMPS uses too).
 */
import { epochNow } from "./stats.js";

export interface TimedSseMessage {
  event: string | undefined;
  data: string;
  /** epochNow when the chunk completing this message was read. */
  at: number;
}

export interface StreamOptions {
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Called for each message as it arrives; return "stop" to hang up. */
  onMessage?: (message: TimedSseMessage) => void | "stop";
}

export interface StreamResult {
  status: number;
  /** epochNow when fetch() was called, when the first body byte arrived, when the stream ended. */
  startedAt: number;
  firstByteAt: number | undefined;
  endedAt: number;
  messages: TimedSseMessage[];
  /** Whether onMessage asked to stop before the server ended the stream. */
  stopped: boolean;
}

export async function streamPost(url: string, body: unknown, options: StreamOptions = {}): Promise<StreamResult> {
  const controller = new AbortController();
  const onOuterAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onOuterAbort, { once: true });
  const startedAt = epochNow();
  const messages: TimedSseMessage[] = [];
  let firstByteAt: number | undefined;
  let stopped = false;
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...options.headers },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!res.body) return { status: res.status, startedAt, firstByteAt, endedAt: epochNow(), messages, stopped };
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (err) {
        if (controller.signal.aborted) break;
        throw err;
      }
      const at = epochNow();
      if (chunk.done) break;
      firstByteAt ??= at;
      buffer += decoder.decode(chunk.value, { stream: true });
      let end: number;
      while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
        const message = parseBlock(block, at);
        if (!message) continue;
        messages.push(message);
        if (options.onMessage?.(message) === "stop") {
          stopped = true;
          controller.abort();
          await reader.cancel().catch(() => undefined);
          return { status: res.status, startedAt, firstByteAt, endedAt: epochNow(), messages, stopped };
        }
      }
    }
    return { status: res.status, startedAt, firstByteAt, endedAt: epochNow(), messages, stopped };
  } finally {
    options.signal?.removeEventListener("abort", onOuterAbort);
  }
}

function parseBlock(block: string, at: number): TimedSseMessage | undefined {
  let event: string | undefined;
  const data: string[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return data.length === 0 ? undefined : { event, data: data.join("\n"), at };
}
