/**
 * A single-consumer async queue: the job runner pushes, one route handler iterates.
 * Events wait in the buffer until they are read; once the consumer leaves (`break` out of
 * its `for await`) nothing more is kept, so an abandoned channel cannot grow.
 */
export class EventChannel<T> implements AsyncIterable<T> {
  #buffer: T[] = [];
  #waiting: ((result: IteratorResult<T>) => void) | undefined;
  #closed = false;
  #detached = false;

  push(value: T): void {
    if (this.#closed || this.#detached) return;
    const waiting = this.#waiting;
    if (waiting) {
      this.#waiting = undefined;
      waiting({ value, done: false });
    } else {
      this.#buffer.push(value);
    }
  }

  /** No more events: the consumer drains what is buffered, then its loop ends. */
  close(): void {
    this.#closed = true;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.({ value: undefined, done: true });
  }

  /** Stops buffering: for a consumer that will never read (a non-streaming request). */
  detach(): void {
    this.#detached = true;
    this.#buffer = [];
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        const value = this.#buffer.shift();
        if (value !== undefined) return Promise.resolve({ value, done: false });
        if (this.#closed || this.#detached) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.#waiting = resolve;
        });
      },
      return: () => {
        this.detach();
        const waiting = this.#waiting;
        this.#waiting = undefined;
        waiting?.({ value: undefined, done: true });
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
