import path from "node:path";
import { pino, type DestinationStream, type Logger } from "pino";
import type { Config } from "../config/index.js";

export type { DestinationStream, Logger } from "pino";
export type LogLevel = Config["logLevel"];

export interface LoggerOptions {
  /** LOG_LEVEL (Config.logLevel): pino's levels, `silent` for none. */
  level: LogLevel;
  /** Where the JSON lines go. Default: stderr, written synchronously. */
  destination?: DestinationStream | undefined;
}

/**
 * Where `diffugen generate` keeps its JSON log when the terminal is for progress bars and
 * results: DATA_DIR/logs/diffugen.log, appended to, written synchronously.
 */
export function logFilePath(dataDir: string): string {
  return path.join(dataDir, "logs", "diffugen.log");
}

/** A destination appending to a log file (its folder is created). */
export function fileLogDestination(file: string): DestinationStream {
  return pino.destination({ dest: file, sync: true, mkdir: true, append: true });
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
