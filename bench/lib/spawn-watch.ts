/**
 * What this process sees of the sd-cli doubles it spawns: node:child_process.spawn is
 * wrapped (execa calls it; the ESM binding is updated too), and for each child of the
 * given executable it notes, on the shared clock (stats.ts epochNow): the spawn() call and
 * its return, the first byte on its stdout, and its 'exit' event.
 */
import childProcess from "node:child_process";
import { syncBuiltinESMExports } from "node:module";
import path from "node:path";
import { epochNow } from "./stats.js";

export interface SpawnedRun {
  pid: number | undefined;
  calledAt: number;
  /** When spawn() returned: node forks and waits for the exec inside it. */
  returnedAt: number;
  firstStdoutAt?: number;
  exitAt?: number;
}

export interface SpawnWatch {
  readonly runs: SpawnedRun[];
  restore(): void;
}

export function watchSpawns(executable: string): SpawnWatch {
  const runs: SpawnedRun[] = [];
  const original = childProcess.spawn;
  const wrapped = function (this: unknown, ...args: unknown[]) {
    const calledAt = epochNow();
    const child = (original as (...a: unknown[]) => childProcess.ChildProcess).apply(this, args);
    if (typeof args[0] === "string" && path.basename(args[0]) === path.basename(executable)) {
      const run: SpawnedRun = { pid: child.pid, calledAt, returnedAt: epochNow() };
      runs.push(run);
      // `once`: the runner's own listeners see every chunk; this only notes the first one's time.
      child.stdout?.once("data", () => (run.firstStdoutAt = epochNow()));
      child.once("exit", () => (run.exitAt = epochNow()));
    }
    return child;
  };
  childProcess.spawn = wrapped as typeof childProcess.spawn;
  syncBuiltinESMExports();
  return {
    runs,
    restore() {
      childProcess.spawn = original;
      syncBuiltinESMExports();
    },
  };
}
