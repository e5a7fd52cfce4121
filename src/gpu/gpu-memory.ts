import { toolOutput } from "../config/index.js";

/**
 * The card's memory, read from the vendor's tool (REFERENCE.md §7). What the VRAM ledger
 * budgets with; undefined when the tool is missing, fails or prints something else, and
 * then VRAM_POLICY=fit falls back to swapping (unknown is never "free").
 */

export interface GpuMemory {
  totalMiB: number;
  usedMiB: number;
  freeMiB: number;
  /** Which tool said so. */
  tool: "nvidia-smi" | "rocm-smi";
}

export type GpuMemoryReader = (signal?: AbortSignal) => Promise<GpuMemory | undefined>;

const timeoutMs = 5_000;

/** `nvidia-smi --query-gpu=memory.total,memory.used,memory.free --format=csv,noheader,nounits`: the first GPU. */
export function nvidiaSmiMemory(bin: string): GpuMemoryReader {
  return async (signal) => {
    const stdout = await run(bin, ["--query-gpu=memory.total,memory.used,memory.free", "--format=csv,noheader,nounits"], signal);
    return stdout === undefined ? undefined : parseNvidiaSmiMemory(stdout);
  };
}

/** "8192, 1234, 6958" (MiB) on the first line; anything else is unknown. */
export function parseNvidiaSmiMemory(stdout: string): GpuMemory | undefined {
  const first = stdout.split("\n").map((l) => l.trim()).find((l) => l !== "");
  const match = first === undefined ? null : /^(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)$/.exec(first);
  if (!match) return undefined;
  const [totalMiB, usedMiB, freeMiB] = [match[1], match[2], match[3]].map((v) => Math.round(Number(v)));
  return { totalMiB: totalMiB!, usedMiB: usedMiB!, freeMiB: freeMiB!, tool: "nvidia-smi" };
}

/** `rocm-smi --showmeminfo vram --json`: the first card's total and used bytes. */
export function rocmSmiMemory(bin: string): GpuMemoryReader {
  return async (signal) => {
    const stdout = await run(bin, ["--showmeminfo", "vram", "--json"], signal);
    return stdout === undefined ? undefined : parseRocmSmiMemory(stdout);
  };
}

/** `{"card0": {"VRAM Total Memory (B)": "17163091968", "VRAM Total Used Memory (B)": "1234"}}`. */
export function parseRocmSmiMemory(stdout: string): GpuMemory | undefined {
  try {
    const cards = JSON.parse(stdout) as Record<string, Record<string, unknown>>;
    const card = Object.entries(cards).find(([name]) => /^card\d+$/.test(name))?.[1];
    const total = Number(card?.["VRAM Total Memory (B)"]);
    const used = Number(card?.["VRAM Total Used Memory (B)"]);
    if (!Number.isFinite(total) || !Number.isFinite(used) || total <= 0) return undefined;
    const mib = (bytes: number) => Math.round(bytes / 2 ** 20);
    return { totalMiB: mib(total), usedMiB: mib(used), freeMiB: mib(total - used), tool: "rocm-smi" };
  } catch {
    return undefined;
  }
}

/** The tool's stdout, or undefined; an abort too is "unknown" here, never an error. */
function run(bin: string, args: string[], signal: AbortSignal | undefined): Promise<string | undefined> {
  return toolOutput(bin, args, { signal, timeoutMs }).catch(() => undefined);
}
