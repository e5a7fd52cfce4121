import { parseSse, type SseMessage } from "../server/harness.js";

/**
 * An SSE client for tests that must act while a stream flows: it reads in the background,
 * keeps every whole message, and `waitFor` resolves on the first one (already seen or to
 * come) that matches. `close()` hangs up.
 */
export class EventStreamReader {
  readonly messages: SseMessage[] = [];
  readonly #controller = new AbortController();
  readonly #waiters = new Set<() => void>();
  #ended = false;
  #failure: unknown;

  private constructor(readonly response: Response) {}

  static async open(url: string, headers: Record<string, string> = {}): Promise<EventStreamReader> {
    const controller = new AbortController();
    const response = await fetch(url, { headers: { Accept: "text/event-stream", ...headers }, signal: controller.signal });
    const reader = new EventStreamReader(response);
    reader.#controller.signal.addEventListener("abort", () => controller.abort(), { once: true });
    if (response.ok && response.body) void reader.#read(response.body);
    else reader.#ended = true;
    return reader;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** The first message that matches, waiting up to `timeoutMs` for it. */
  async waitFor(what: string, match: (message: SseMessage, data: any) => boolean, timeoutMs = 15_000): Promise<SseMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find((m) => match(m, JSON.parse(m.data)));
      if (found) return found;
      if (this.#ended) throw new Error(`the stream ended before ${what}${this.#failure ? ` (${String(this.#failure)})` : ""}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; last: ${this.messages.slice(-3).map((m) => m.event).join(", ")}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#waiters.add(done);
      });
    }
  }

  /** Waits for `event` (whose data passes `match`). */
  waitForEvent(event: string, match: (data: any) => boolean = () => true, timeoutMs?: number): Promise<SseMessage> {
    return this.waitFor(`event ${event}`, (m, data) => m.event === event && match(data), timeoutMs);
  }

  close(): void {
    this.#controller.abort();
  }

  async #read(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let text = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        const cut = text.lastIndexOf("\n\n");
        if (cut < 0) continue;
        this.messages.push(...parseSse(text.slice(0, cut + 2)).messages);
        text = text.slice(cut + 2);
        this.#wake();
      }
    } catch (err) {
      if (!this.#controller.signal.aborted) this.#failure = err;
    } finally {
      this.#ended = true;
      this.#wake();
    }
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) {
      this.#waiters.delete(waiter);
      waiter();
    }
  }
}
