import { accessSync, constants, statSync } from "node:fs";
import path from "node:path";

/**
 * Where `bin` would be found when spawned: a path (absolute or relative to the working
 * directory) or a bare name looked up on PATH. Undefined when there is no executable file.
 * Checked before a job starts, so a missing sd-cli is a clear 503, not an LLM unload and a
 * spawn error.
 */
export function locateExecutable(bin: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const hasDir = bin.includes("/") || bin.includes(path.sep);
  const candidates = hasDir
    ? [path.resolve(bin)]
    : (env.PATH ?? "")
        .split(path.delimiter)
        .filter((dir) => dir !== "")
        .map((dir) => path.join(dir, bin));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}
