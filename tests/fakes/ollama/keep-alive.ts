/**
 * Ollama's keep_alive as its server reads it (api.Duration): a JSON number is seconds,
 * a string is a Go duration ("5m", "1h30m", "300ms", "0"); anything negative means
 * "forever". A string without a unit (other than "0") is a 400, as in Go.
 */

export const FOREVER = Number.POSITIVE_INFINITY;
export const DEFAULT_KEEP_ALIVE_MS = 5 * 60_000;

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** Milliseconds (FOREVER for negative), or throws an Error with Go's message. */
export function parseKeepAlive(value: unknown): number {
  if (value === undefined || value === null) return DEFAULT_KEEP_ALIVE_MS;
  if (typeof value === "number") return value < 0 ? FOREVER : value * 1_000;
  if (typeof value !== "string") throw new Error(`json: cannot unmarshal ${typeof value} into Go struct field .keep_alive`);
  const s = value.trim();
  if (s === "0" || s === "+0" || s === "-0") return 0;
  const m = /^([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$/.exec(s);
  if (!m) {
    throw new Error(/^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(s) ? `time: missing unit in duration "${s}"` : `time: invalid duration "${s}"`);
  }
  let total = 0;
  for (const part of s.replace(/^[+-]/, "").matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(part[1]) * (UNIT_MS[part[2] ?? "s"] ?? 0);
  }
  return m[1] === "-" ? FOREVER : total;
}
