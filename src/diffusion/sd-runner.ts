import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { execa } from "execa";
import {
  SdAbortedError,
  SdOutOfMemoryError,
  SdOutputMissingError,
  SdProcessError,
  SdSpawnError,
  SdTimeoutError,
  type SdDiagnostics,
} from "./errors.js";
import { guardedListener } from "./guarded-listener.js";
import { completePngInfo } from "./png-check.js";
import { PreviewWatcher } from "./preview-watcher.js";
import type { SdEvent } from "./sd-events.js";
import { SdOutputParser, type SdOutputSummary } from "./sd-output-parser.js";
import { killWhenThisProcessExits, sdSpawnOptions } from "./sd-spawn.js";

/** sd-cli has no signal handlers, so SIGTERM ends it at once; SIGKILL is the backstop. */
export const defaultKillGraceMs = 3000;

export interface SdRunOptions {
  bin: string;
  args: readonly string[];
  /** The files sd-cli should write, in image order (see batchOutputPaths). */
  outputPaths: readonly string[];
  /** Set when the args ask for previews (`--preview-path`). */
  previewPath?: string | undefined;
  cwd?: string | undefined;
  /** Added to this process's environment for the child. */
  env?: Record<string, string | undefined> | undefined;
  timeoutMs?: number | undefined;
  killGraceMs?: number | undefined;
  signal?: AbortSignal | undefined;
  onEvent?: ((event: SdEvent) => void) | undefined;
  /**
   * sd-cli exited with 0 (reaped): its VRAM is free, and its output is about to be checked.
   * The GPU can be handed on now. Not called when it failed or was ended: then the caller
   * gives the GPU back once the run's files are cleaned up, as for any failure.
   */
  onCleanExit?: (() => void) | undefined;
  /** The seed passed with -s: the fallback when a build does not print the real one. */
  seed?: number | undefined;
}

export interface SdImage {
  path: string;
  seed: number;
  /** 0-based position in the batch. */
  index: number;
  width: number;
  height: number;
}

export interface SdTimings {
  /** From the spawn call to the first event parsed from sd-cli's output. */
  spawnToFirstEventMs: number | undefined;
  /** From the process exit to this result (flushing, preview read, output checks). */
  exitToResultMs: number;
  /** From the call to the result. */
  totalMs: number;
  /** Sum of sd-cli's `sampling completed, taking Xs` over the batch. */
  samplingSeconds: number;
  /** sd-cli's own `generate_image completed in Xs`, when printed. */
  generateSeconds: number | undefined;
}

export interface SdRunResult {
  images: SdImage[];
  /** The real seed of each image (sd-cli counts up from the first). */
  seeds: number[];
  timings: SdTimings;
  pid: number;
  /** Everything sd-cli reported (warnings, model version...). */
  output: SdOutputSummary;
}

/**
 * Runs sd-cli once: streams its output through SdOutputParser into `onEvent`, ends it on
 * abort or timeout (SIGTERM, then SIGKILL after the grace period), and only settles once
 * the process is gone. On any failure, the files it may have written (outputs, preview)
 * are removed, so a failed job leaves nothing half-made behind.
 */
export async function runSdCli(options: SdRunOptions): Promise<SdRunResult> {
  const startedAt = performance.now();
  if (options.signal?.aborted) throw new SdAbortedError(options.signal.reason);

  const parser = new SdOutputParser();
  const cwd = options.cwd ?? process.cwd();
  // Our own abort: a throwing onEvent must not leave sd-cli running behind us.
  const internal = new AbortController();
  const cancelSignal = options.signal ? AbortSignal.any([options.signal, internal.signal]) : internal.signal;
  let firstEventAt: number | undefined;
  let exitedAt: number | undefined;
  const listener = guardedListener(options.onEvent, (err) => internal.abort(err));
  const deliver = listener.deliver;
  const preview = options.previewPath ? new PreviewWatcher(options.previewPath, deliver) : undefined;
  const handle = (events: SdEvent[]): void => {
    if (events.length > 0) firstEventAt ??= performance.now();
    for (const event of events) {
      deliver(event);
      if (preview && (event.type === "step" || event.type === "sampling_completed")) {
        preview.poke({
          phase: event.phase,
          progress: event.progress,
          step: event.type === "step" ? event.step : (parser.lastStep?.step ?? 0),
          imageIndex: event.imageIndex,
        });
      }
    }
  };

  const spawnAt = performance.now();
  const subprocess = execa(options.bin, [...options.args], {
    ...sdSpawnOptions(cwd, options.env),
    cancelSignal,
    timeout: options.timeoutMs && options.timeoutMs > 0 ? options.timeoutMs : undefined,
    killSignal: "SIGTERM",
    forceKillAfterDelay: options.killGraceMs ?? defaultKillGraceMs,
  });
  const pid = subprocess.pid;
  const stopWatching = killWhenThisProcessExits(subprocess);
  subprocess.once("exit", (code, signal) => {
    exitedAt = performance.now();
    stopWatching();
    if (code !== 0 || signal !== null || cancelSignal.aborted) return;
    try {
      options.onCleanExit?.();
    } catch {
      // The caller's business; the run's own result is still to come.
    }
  });
  if (pid !== undefined) {
    deliver({ type: "spawned", pid, argv: [options.bin, ...options.args], phase: "loading_model", progress: 0 });
  }
  // Chunks go to the parser as the pipe hands them over: no line buffering here.
  subprocess.stdout?.on("data", (chunk: Buffer) => handle(parser.push("stdout", chunk)));
  subprocess.stderr?.on("data", (chunk: Buffer) => handle(parser.push("stderr", chunk)));

  const result = await subprocess; // settles only after the process has exited
  exitedAt ??= performance.now();
  handle(parser.end());
  await preview?.idle();
  preview?.stop();

  const output = parser.summary;
  const diagnostics: SdDiagnostics = { errorLines: output.errorLines, stderrTail: output.stderrTail, pid };
  const fail = async (error: unknown): Promise<never> => {
    await removeFiles(cwd, options, output);
    throw error;
  };

  if (listener.error !== undefined) return fail(listener.error);
  if (pid === undefined) {
    const code = (result.cause as NodeJS.ErrnoException | undefined)?.code ?? result.code;
    return fail(new SdSpawnError(options.bin, code, result.cause));
  }
  if (result.isCanceled || options.signal?.aborted) return fail(new SdAbortedError(options.signal?.reason, diagnostics));
  if (result.timedOut) return fail(new SdTimeoutError(options.timeoutMs ?? 0, diagnostics));

  const exitCode = result.exitCode;
  const signal = result.signal ?? undefined;
  if (exitCode !== 0 || signal !== undefined) {
    if (output.outOfMemoryLine) return fail(new SdOutOfMemoryError(exitCode, signal, output.outOfMemoryLine, diagnostics));
    return fail(new SdProcessError(exitCode, signal, diagnostics));
  }

  // Exit 0 is not enough: sd-cli reports a failed save in a log line and still exits 0
  // on some builds, and a file can be missing for reasons it never mentions.
  const images: SdImage[] = [];
  const missing: string[] = [];
  for (const [index, expected] of options.outputPaths.entries()) {
    const saved = output.saved.find((s) => s.imageIndex === index);
    const file = saved?.success ? path.resolve(cwd, saved.path) : expected;
    const info = saved && !saved.success ? undefined : await readPngInfo(file);
    if (!info) {
      missing.push(file);
      continue;
    }
    const seed = output.seeds[index] ?? (options.seed !== undefined && options.seed >= 0 ? options.seed + index : -1);
    images.push({ path: file, seed, index, width: info.width, height: info.height });
  }
  if (missing.length > 0) {
    const error = output.outOfMemoryLine
      ? new SdOutOfMemoryError(0, undefined, output.outOfMemoryLine, diagnostics)
      : new SdOutputMissingError(missing, diagnostics);
    return fail(error);
  }
  if (options.previewPath) await rm(options.previewPath, { force: true });

  const resultAt = performance.now();
  return {
    images,
    seeds: images.map((image) => image.seed),
    pid,
    output,
    timings: {
      spawnToFirstEventMs: firstEventAt === undefined ? undefined : firstEventAt - spawnAt,
      exitToResultMs: resultAt - exitedAt,
      totalMs: resultAt - startedAt,
      samplingSeconds: output.samplingSeconds.reduce((sum, s) => sum + (s ?? 0), 0),
      generateSeconds: output.generateSeconds,
    },
  };
}

async function readPngInfo(file: string): Promise<{ width: number; height: number } | undefined> {
  try {
    return completePngInfo(await readFile(file));
  } catch {
    return undefined;
  }
}

/** Outputs (expected and reported) and the preview: nothing half-made stays on disk. */
async function removeFiles(cwd: string, options: SdRunOptions, output: SdOutputSummary): Promise<void> {
  const files = new Set<string>(options.outputPaths);
  for (const saved of output.saved) files.add(path.resolve(cwd, saved.path));
  if (options.previewPath) files.add(options.previewPath);
  await Promise.all([...files].map((file) => rm(file, { force: true }).catch(() => undefined)));
}
