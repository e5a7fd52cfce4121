import { execa } from "execa";

/**
 * The stdout of a local tool (nvidia-smi, rocm-smi) that exited 0; undefined when it is
 * missing, fails, or takes longer than `timeoutMs` (default 5 s). These tools only ever
 * add information, so a failure is "unknown", never an error. Rejects only when `signal`
 * aborts.
 */
export async function toolOutput(
  bin: string,
  args: readonly string[],
  opts: { signal?: AbortSignal | undefined; timeoutMs?: number | undefined } = {},
): Promise<string | undefined> {
  try {
    const result = await execa(bin, [...args], {
      timeout: opts.timeoutMs ?? 5_000,
      reject: false,
      stdin: "ignore",
      ...(opts.signal ? { cancelSignal: opts.signal } : {}),
    });
    if (opts.signal?.aborted) throw opts.signal.reason;
    return result.exitCode === 0 && typeof result.stdout === "string" ? result.stdout : undefined;
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    void err;
    return undefined;
  }
}
