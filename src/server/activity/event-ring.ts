/**
 * The recent past of a stream, for clients that reconnect: the last events with monotonic
 * ids (1, 2, 3...), bounded by count and by bytes (a preview is tens of kilobytes, a step
 * a hundred bytes). What falls out of it is gone: a client that asks for events after an id
 * no longer held learns so (`after()` answers undefined) and must start again from a
 * snapshot, never from a stream with a hole in it.
 */
export interface RingLimits {
  maxEvents: number;
  maxBytes: number;
}

interface Held<T> {
  id: number;
  value: T;
  bytes: number;
}

export class EventRing<T> {
  #held: Held<T>[] = [];
  /** Index of the oldest event still held in #held (the array is trimmed in batches). */
  #start = 0;
  #bytes = 0;
  #lastId = 0;

  constructor(
    private readonly limits: RingLimits,
    private readonly sizeOf: (value: T) => number,
  ) {}

  /** Keeps the event; returns its id. */
  push(value: T): number {
    const id = ++this.#lastId;
    const bytes = this.sizeOf(value);
    this.#held.push({ id, value, bytes });
    this.#bytes += bytes;
    // The newest event is always kept, even alone over the byte budget.
    while (this.length > 1 && (this.length > this.limits.maxEvents || this.#bytes > this.limits.maxBytes)) {
      this.#bytes -= this.#held[this.#start]!.bytes;
      this.#start += 1;
    }
    if (this.#start > 1024 && this.#start * 2 > this.#held.length) {
      this.#held = this.#held.slice(this.#start);
      this.#start = 0;
    }
    return id;
  }

  /** The id of the newest event (0 before the first). */
  get lastId(): number {
    return this.#lastId;
  }

  get length(): number {
    return this.#held.length - this.#start;
  }

  /**
   * Every event after `id`, oldest first (none when `id` is the newest). Undefined when some
   * of them are no longer held, or when `id` was never given out.
   */
  after(id: number): { id: number; value: T }[] | undefined {
    if (!Number.isInteger(id) || id < 0 || id > this.#lastId) return undefined;
    if (id === this.#lastId) return [];
    const oldest = this.#held[this.#start]?.id ?? this.#lastId + 1;
    if (id + 1 < oldest) return undefined;
    return this.#held.slice(this.#start + (id + 1 - oldest)).map(({ id: heldId, value }) => ({ id: heldId, value }));
  }
}
