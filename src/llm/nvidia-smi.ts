import { locateExecutable, toolOutput } from "../config/index.js";

/**
 * What nvidia-smi reports. Free VRAM: a number for the status page and the unload report,
 * never a condition for anything (many boxes run without the tool, e.g. in a container
 * without the NVIDIA utilities). The processes holding GPU memory: the one condition, and
 * only one way round: an answer listing none lets an image be drawn after Ollama broke off
 * the unload (OllamaResidency); no tool, a failure or any process listed changes nothing.
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
  const stdout = await toolOutput(bin, ["--query-gpu=memory.free", "--format=csv,noheader,nounits"], opts);
  if (stdout === undefined) return undefined;
  const first = stdout.split("\n").map((l) => l.trim()).find((l) => l !== "");
  if (first === undefined || !/^\d+(\.\d+)?$/.test(first)) return undefined;
  return Math.round(Number(first));
}

/** One process nvidia-smi lists as holding GPU memory (`--query-compute-apps`). */
export interface ComputeApp {
  pid: number;
  /** MiB; undefined when nvidia-smi cannot tell ("[N/A]", e.g. under WSL or in a container). */
  usedMemoryMiB: number | undefined;
}

/**
 * The processes holding GPU memory: `nvidia-smi --query-compute-apps=pid,used_memory
 * --format=csv,noheader,nounits` prints one line per process, nothing when none. Resolves
 * [] only when nvidia-smi answered and listed none; undefined when the tool fails or
 * prints something else (unknown is never "free"); rejects only when `signal` aborts.
 */
export async function readComputeApps(
  bin: string,
  opts: { signal?: AbortSignal | undefined; timeoutMs?: number } = {},
): Promise<ComputeApp[] | undefined> {
  const stdout = await toolOutput(bin, ["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"], opts);
  return stdout === undefined ? undefined : parseComputeApps(stdout);
}

/**
 * The lines of `--query-compute-apps=pid,used_memory --format=csv,noheader,nounits`:
 * "1234, 5678" each. Blank output is no process; any line that is not a pid and an amount
 * (a message such as "No devices were found") makes the whole answer unknown: undefined.
 */
export function parseComputeApps(stdout: string): ComputeApp[] | undefined {
  const apps: ComputeApp[] = [];
  for (const line of stdout.split("\n").map((l) => l.trim()).filter((l) => l !== "")) {
    const match = /^(\d+)\s*,\s*(?:(\d+(?:\.\d+)?)|\[[^\]]*\])$/.exec(line);
    if (match === null) return undefined;
    apps.push({ pid: Number(match[1]), usedMemoryMiB: match[2] === undefined ? undefined : Math.round(Number(match[2])) });
  }
  return apps;
}
