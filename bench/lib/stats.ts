import path from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";

/** Small numeric helpers every bench shares, so their figures are computed the same way. */

export interface Spread {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile (a value that was really measured); NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function spread(values: readonly number[], digits = 2): Spread {
  return {
    n: values.length,
    p50: round(percentile(values, 50), digits),
    p99: round(percentile(values, 99), digits),
    max: round(values.length === 0 ? Number.NaN : Math.max(...values), digits),
  };
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

export function round(value: number, digits = 1): number {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** `12.3 ms`, or `-` for a figure that could not be measured. */
export function ms(value: number | undefined, digits = 1): string {
  return value === undefined || !Number.isFinite(value) ? "-" : `${value.toFixed(digits)} ms`;
}

/** The clock every process can share: performance.timeOrigin + now(), in ms since the epoch. */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Prints rows as aligned columns: the first `leftColumns` (labels) left, the rest (figures) right. */
export function printRows(rows: string[][], leftColumns = 1): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  for (const r of rows) {
    console.log(r.map((cell, c) => (c < leftColumns ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ").trimEnd());
  }
}

/** BENCH_QUICK=1: fewer samples, for trying a change; the figures are noisier. */
export const quick = process.env.BENCH_QUICK === "1" || process.env.BENCH_QUICK === "true";

/** True when the module at `metaUrl` is the script node was asked to run (`tsx bench/x.ts`). */
export function isMain(metaUrl: string): boolean {
  const arg = process.argv[1];
  return arg !== undefined && pathToFileURL(path.resolve(arg)).href === metaUrl;
}

/**
 * Lets a bench run on its own (`npx tsx bench/x.ts`): runs it and prints its table when
 * `metaUrl` is the script node was asked to run. Exit code 1 if it throws or `failed`
 * says its result breaks a rule (GPU violations).
 */
export function runWhenMain<R>(metaUrl: string, run: () => Promise<R>, print: (result: R) => void, failed: (result: R) => boolean = () => false): void {
  if (!isMain(metaUrl)) return;
  run()
    .then((result) => {
      print(result);
      if (failed(result)) process.exitCode = 1;
    })
    .catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    });
}
