import { existsSync } from "node:fs";
import path from "node:path";

/**
 * Loads the settings file before anything reads the environment: `.env` in the working
 * directory when there is one (none is fine), or the file named by `--env-file PATH` (which
 * must exist: a usage error, exit 2, otherwise). Node's own `process.loadEnvFile` reads it;
 * it never replaces a variable that is already set, so the real environment wins.
 *
 * main.ts imports ./load-env.js (which calls loadEnvFile) first, so the file is loaded before
 * any other module runs.
 */

export interface EnvFileChoice {
  /** The file to load, absolute; undefined: nothing to load. */
  file: string | undefined;
  /** --env-file was given (then a missing file is an error). */
  explicit: boolean;
  /** --env-file without a value. */
  error?: string | undefined;
}

/** `--env-file PATH` or `--env-file=PATH` anywhere before `--`; else `.env` in `cwd`. */
export function chooseEnvFile(argv: readonly string[], cwd: string): EnvFileChoice {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") break;
    if (arg === "--env-file") {
      const value = argv[i + 1];
      if (value === undefined || value === "" || value.startsWith("-")) return { file: undefined, explicit: true, error: "--env-file needs a file path" };
      return { file: path.resolve(cwd, value), explicit: true };
    }
    if (arg.startsWith("--env-file=")) {
      const value = arg.slice("--env-file=".length);
      if (value === "") return { file: undefined, explicit: true, error: "--env-file needs a file path" };
      return { file: path.resolve(cwd, value), explicit: true };
    }
  }
  const file = path.join(cwd, ".env");
  return { file: existsSync(file) ? file : undefined, explicit: false };
}

/** Loads the chosen file into process.env; returns an error message for a usage error. */
export function loadEnvFile(argv: readonly string[] = process.argv.slice(2), cwd = process.cwd()): string | undefined {
  const choice = chooseEnvFile(argv, cwd);
  if (choice.error) return choice.error;
  if (choice.file === undefined) return undefined;
  if (choice.explicit && !existsSync(choice.file)) return `--env-file: no such file: ${choice.file}`;
  try {
    process.loadEnvFile(choice.file);
  } catch (err) {
    return `cannot read ${choice.file}: ${err instanceof Error ? err.message : String(err)}`;
  }
  return undefined;
}
