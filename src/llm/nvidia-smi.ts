import { execa } from "execa";
import { locateExecutable } from "../config/index.js";

/**
 * Free VRAM as nvidia-smi reports it: a number for the status page and the unload
 * report, never a condition for anything (many boxes run without the tool, e.g. in a
 * container without the NVIDIA utilities).
 */

/**
 * nvidia-smi: the configured path (NVIDIA_SMI, taken as given), else the one on PATH,
 * else undefined. PATH is searched as for sd-cli, by the one shared lookup.
 */
export function findNvidiaSmi(configured: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return configured ?? locateExecutable("nvidia-smi", env);
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
