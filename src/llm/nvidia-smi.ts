import fs from "node:fs";
import path from "node:path";
import { execa } from "execa";

/**
 * Free VRAM as nvidia-smi reports it: a number for the status page and the unload
 * report, never a condition for anything (many boxes run without the tool, e.g. in a
 * container without the NVIDIA utilities).
 */

/** Finds an executable on PATH the way a shell would, without running a shell. */
export function findOnPath(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = (env.PATH ?? env.Path ?? "").split(path.delimiter).filter((d) => d !== "");
  const extensions =
    process.platform === "win32" ? ["", ...(env.PATHEXT ?? ".EXE;.CMD;.BAT").split(";").map((e) => e.toLowerCase())] : [""];
  for (const dir of dirs) {
    for (const ext of extensions) {
      const candidate = path.join(dir, name + ext);
      try {
        if (fs.statSync(candidate).isFile()) {
          fs.accessSync(candidate, fs.constants.X_OK);
          return candidate;
        }
      } catch {
        // not here; keep looking
      }
    }
  }
  return undefined;
}

/**
 * Free memory of the first GPU in MiB (`nvidia-smi --query-gpu=memory.free
 * --format=csv,noheader,nounits` prints one line per GPU). Resolves undefined when the
 * tool fails or prints something else; rejects only when `signal` aborts.
 */
export async function readFreeVramMiB(
  bin: string,
  opts: { signal?: AbortSignal | undefined; timeoutMs?: number } = {},
): Promise<number | undefined> {
  try {
    const result = await execa(bin, ["--query-gpu=memory.free", "--format=csv,noheader,nounits"], {
      timeout: opts.timeoutMs ?? 5_000,
      reject: false,
      stdin: "ignore",
      ...(opts.signal ? { cancelSignal: opts.signal } : {}),
    });
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (result.exitCode !== 0 || typeof result.stdout !== "string") return undefined;
    const first = result.stdout.split("\n").map((l) => l.trim()).find((l) => l !== "");
    if (first === undefined || !/^\d+(\.\d+)?$/.test(first)) return undefined;
    return Math.round(Number(first));
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    void err;
    return undefined;
  }
}
