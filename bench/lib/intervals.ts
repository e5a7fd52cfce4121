/**
 * Time intervals on one clock, and how much of a window they cover: what a bench
 * subtracts from a request's wall time as spent by someone else (the doubles).
 */

export interface Interval {
  start: number;
  end: number;
}

/** Length of the union of the intervals, clipped to [from, to]. */
export function coveredMs(all: readonly Interval[], from: number, to: number): number {
  const clipped = all
    .map((i) => [Math.max(i.start, from), Math.min(i.end, to)] as const)
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  let total = 0;
  let curStart = -Infinity;
  let curEnd = -Infinity;
  for (const [a, b] of clipped) {
    if (a > curEnd) {
      if (curEnd > curStart) total += curEnd - curStart;
      curStart = a;
      curEnd = b;
    } else curEnd = Math.max(curEnd, b);
  }
  if (curEnd > curStart) total += curEnd - curStart;
  return total;
}

/** The part of [from, to] that none of `covering` covers. */
export function uncoveredMs(covering: readonly Interval[], from: number, to: number): number {
  return to > from ? to - from - coveredMs(covering, from, to) : 0;
}

/** The parts of `inner` outside `covering`, within [from, to]: e.g. SQLite time not hidden behind sd-cli. */
export function uncoveredPartMs(inner: readonly Interval[], covering: readonly Interval[], from: number, to: number): number {
  let total = 0;
  for (const i of inner) {
    const a = Math.max(i.start, from);
    const b = Math.min(i.end, to);
    if (b > a) total += uncoveredMs(covering, a, b);
  }
  return total;
}
