/**
 * How OllamaResidency polled /api/ps while waiting for an unload before issue 14: 50 ms,
 * doubling to 100 ms, from the unload call on. Benches run it beside the product's
 * default to show what the new schedule changes, side by side in one run.
 */
export const OLD_POLL_SCHEDULE = { initialMs: 50, maxMs: 100, fastMs: 0, fastForMs: 0 } as const;
