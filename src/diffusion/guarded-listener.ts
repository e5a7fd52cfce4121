import type { SdEvent } from "./sd-events.js";

/**
 * Hands sd events to a caller's listener without letting it throw into the code reading
 * sd.cpp's output: the first error is kept (the run fails with it once the process is
 * dealt with), `onThrow` is told at once, and later events are dropped.
 */
export function guardedListener(
  onEvent: ((event: SdEvent) => void) | undefined,
  onThrow: (error: unknown) => void = () => {},
): { deliver(event: SdEvent): void; readonly error: unknown } {
  let error: unknown;
  return {
    deliver(event) {
      if (!onEvent || error !== undefined) return;
      try {
        onEvent(event);
      } catch (err) {
        error = err;
        onThrow(err);
      }
    },
    get error() {
      return error;
    },
  };
}
