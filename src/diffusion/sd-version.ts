import { statSync } from "node:fs";
import { execa } from "execa";
import { locateExecutable } from "../config/index.js";

/**
 * `sd-cli --version`, for /health: which stable-diffusion.cpp build draws here. Run once
 * per binary (argv, no shell, 5 s timeout) and cached; the cache key includes the file's
 * size and mtime, so installing another build (diffugen setup) is noticed without a
 * restart. A failure is kept for a minute (a missing library may get installed), so a
 * binary that hangs is not run again on every health check.
 */

export interface SdCliVersion {
  /** The line naming the version, e.g. `stable-diffusion.cpp version master-827-97d2990, commit 97d29908`. */
  version: string | null;
  /** Why there is none: not found, timed out, exit status... */
  error?: string;
}

const versionTimeoutMs = 5_000;
const failureTtlMs = 60_000;
const cache = new Map<string, Promise<SdCliVersion>>();

export function sdCliVersion(bin: string, env?: Record<string, string | undefined>): Promise<SdCliVersion> {
  const file = locateExecutable(bin);
  if (file === undefined) return Promise.resolve({ version: null, error: `not found: ${bin}` });
  let key: string;
  try {
    const info = statSync(file);
    key = `${file}\0${info.size}\0${info.mtimeMs}`;
  } catch {
    return Promise.resolve({ version: null, error: `not found: ${bin}` });
  }
  let probe = cache.get(key);
  if (!probe) {
    const started = runVersion(file, env).catch((err: unknown) => ({ version: null, error: err instanceof Error ? err.message : String(err) }));
    cache.set(key, started);
    void started.then((answer) => {
      if (answer.version === null) setTimeout(() => cache.delete(key), failureTtlMs).unref();
    });
    probe = started;
  }
  return probe;
}

async function runVersion(file: string, env: Record<string, string | undefined> | undefined): Promise<SdCliVersion> {
  const result = await execa(file, ["--version"], {
    timeout: versionTimeoutMs,
    reject: false,
    stdin: "ignore",
    env,
    forceKillAfterDelay: 1_000,
    maxBuffer: 64 * 1024,
  });
  const lines = [result.stdout, result.stderr]
    .flatMap((text) => (typeof text === "string" ? text.split(/\r?\n/) : []))
    .map((line) => line.trim())
    .filter((line) => line !== "");
  if (result.timedOut) return { version: null, error: `no answer to --version within ${versionTimeoutMs / 1000} s` };
  if (result.exitCode !== 0) {
    const why = result.signal ? `killed by ${result.signal}` : result.exitCode === undefined ? (result.cause instanceof Error ? result.cause.message : "did not start") : `exit code ${result.exitCode}`;
    return { version: null, error: `--version failed (${why})${lines[0] ? `: ${lines.at(-1)!.slice(0, 200)}` : ""}` };
  }
  const line = lines.find((l) => /version/i.test(l)) ?? lines[0];
  return line === undefined ? { version: null, error: "--version printed nothing" } : { version: line.slice(0, 300) };
}
