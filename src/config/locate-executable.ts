import { accessSync, constants, statSync } from "node:fs";
import path from "node:path";

/**
 * Where `bin` would be found when spawned: a path (absolute or relative to the working
 * directory) or a bare name looked up on PATH the way a shell would, without running a
 * shell. Undefined when there is no executable file. Used before a job starts (a missing
 * sd-cli is a clear 503, not an LLM unload and a spawn error), by /health, and to find
 * nvidia-smi; it lives here, below llm and diffusion, so both can share the one lookup.
 */
export function locateExecutable(bin: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  // Windows finds `nvidia-smi` as nvidia-smi.exe; elsewhere the name is the file name.
  const extensions =
    process.platform === "win32" ? ["", ...(env.PATHEXT ?? ".EXE;.CMD;.BAT").split(";").map((e) => e.toLowerCase())] : [""];
  const hasDir = bin.includes("/") || bin.includes(path.sep);
  const bases = hasDir
    ? [path.resolve(bin)]
    : (env.PATH ?? env.Path ?? "")
        .split(path.delimiter)
        .filter((dir) => dir !== "")
        .map((dir) => path.join(dir, bin));
  for (const base of bases) {
    for (const ext of extensions) {
      const candidate = base + ext;
      try {
        accessSync(candidate, constants.X_OK);
        if (statSync(candidate).isFile()) return candidate;
      } catch {
        // not here; keep looking
      }
    }
  }
  return undefined;
}
