import { pino, type DestinationStream, type Logger } from "pino";
import type { Config } from "../config/index.js";

export type { Logger } from "pino";
export type LogLevel = Config["logLevel"];

export interface LoggerOptions {
  /** LOG_LEVEL (Config.logLevel): pino's levels, `silent` for none. */
  level: LogLevel;
  /** Where the JSON lines go. Default: stderr, written synchronously. */
  destination?: DestinationStream | undefined;
}

/**
 * DiffuGen's structured log: one JSON object per line, per event worth keeping (a job
 * started or finished, a warning, an unexpected error), with `level` as a word, an ISO
 * `time`, and the job id on every job line. stderr, not stdout: the CLI prints its own
 * results on stdout, and a log line must never land in the middle of them. Synchronous
 * writes: the lines are few, and none is lost when the process exits right after.
 */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: "diffugen" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ dest: 2, sync: true }),
  );
}
