/**
 * Typed failures of an image generation. Request problems (InvalidGenerationParamsError)
 * are thrown before anything is spawned, so an API can answer 400 naming `param`;
 * everything else is about the sd-cli process and extends SdError, whose message already
 * carries what sd-cli said (its last ERROR lines) so a log or a client sees the cause.
 */

/** A request value the generation cannot use; `param` is the request field's name. */
export class InvalidGenerationParamsError extends Error {
  constructor(
    readonly param: string,
    message: string,
  ) {
    super(message);
    this.name = "InvalidGenerationParamsError";
  }
}

/** What sd-cli said before it failed: the base of every process error. */
export interface SdDiagnostics {
  /** Messages of its `[ERROR]` log lines, in order. */
  errorLines?: readonly string[];
  /** Its last lines on stderr (also the non-log ones, e.g. a C++ `terminate called ...`). */
  stderrTail?: readonly string[];
  pid?: number | undefined;
  /** Which sd.cpp program said it: `sd-cli` (the default) or `sd-server`. */
  program?: SdProgram | undefined;
}

export type SdProgram = "sd-cli" | "sd-server";

export class SdError extends Error {
  readonly errorLines: readonly string[];
  readonly stderrTail: readonly string[];
  readonly pid: number | undefined;
  readonly program: SdProgram;

  constructor(message: string, diagnostics: SdDiagnostics = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SdError";
    this.errorLines = diagnostics.errorLines ?? [];
    this.stderrTail = diagnostics.stderrTail ?? [];
    this.pid = diagnostics.pid;
    this.program = diagnostics.program ?? "sd-cli";
  }
}

/** The sd-cli (or sd-server) binary could not be started at all (wrong path, not executable...). */
export class SdSpawnError extends SdError {
  constructor(
    readonly bin: string,
    readonly code: string | undefined,
    cause?: unknown,
    program: SdProgram = "sd-cli",
  ) {
    const setting = program === "sd-server" ? "SD_SERVER_BIN" : "SD_CPP_BIN";
    super(`could not start ${program} '${bin}'${code ? ` (${code})` : ""}: check ${setting}`, { program }, { cause });
    this.name = "SdSpawnError";
  }
}

/** sd-cli ended with a non-zero exit code or was killed by a signal we did not send. */
export class SdProcessError extends SdError {
  constructor(
    readonly exitCode: number | undefined,
    readonly signal: string | undefined,
    diagnostics: SdDiagnostics,
    message?: string,
  ) {
    super(message ?? `${describeExit(exitCode, signal, diagnostics.program)}${explain(diagnostics)}`, diagnostics);
    this.name = "SdProcessError";
  }
}

/**
 * The GPU (or host) ran out of memory. Separate from SdProcessError's generic case so the
 * caller can say "try a smaller size / --vae-tiling" or check that the LLM really left VRAM.
 */
export class SdOutOfMemoryError extends SdProcessError {
  constructor(
    exitCode: number | undefined,
    signal: string | undefined,
    /** The line that told us so, e.g. `cudaMalloc failed: out of memory`. */
    readonly oomLine: string,
    diagnostics: SdDiagnostics,
  ) {
    super(
      exitCode,
      signal,
      diagnostics,
      `${program(diagnostics)} ran out of memory (${describeExit(exitCode, signal, diagnostics.program).replace(/^sd-\w+ /, "")}): ${oomLine}`,
    );
    this.name = "SdOutOfMemoryError";
  }
}

/** sd-cli exited 0 but an image it should have written is missing, unreadable or failed to save. */
export class SdOutputMissingError extends SdProcessError {
  constructor(
    readonly missing: readonly string[],
    diagnostics: SdDiagnostics,
  ) {
    super(
      0,
      undefined,
      diagnostics,
      (diagnostics.program === "sd-server"
        ? `sd-server answered without ${missing.length === 1 ? "the image" : "these images"}: `
        : `sd-cli exited 0 but did not write ${missing.length === 1 ? "the image" : "these images"}: `) +
        missing.join(", ") +
        explain(diagnostics),
    );
    this.name = "SdOutputMissingError";
  }
}

/**
 * sd-server answered a generation with an error status (it refuses nothing DiffuGen sends
 * when the request was validated first, so this is its own failure: `generate_image
 * returned no results`, an exception). Carries its answer and what it printed meanwhile.
 */
export class SdServerRequestError extends SdProcessError {
  constructor(
    readonly status: number,
    readonly answer: string,
    diagnostics: SdDiagnostics,
  ) {
    super(undefined, undefined, { ...diagnostics, program: "sd-server" }, `sd-server answered ${status}: ${answer.slice(0, 300)}${explain(diagnostics)}`);
    this.name = "SdServerRequestError";
  }
}

/** The generation took longer than GENERATION_TIMEOUT_S; the process was ended. */
export class SdTimeoutError extends SdError {
  constructor(
    readonly timeoutMs: number,
    diagnostics: SdDiagnostics = {},
  ) {
    super(`${program(diagnostics)} did not finish within ${formatSeconds(timeoutMs)}; it was stopped`, diagnostics);
    this.name = "SdTimeoutError";
  }
}

/** The caller's AbortSignal fired (client gone, cancel, shutdown); the process was ended. */
export class SdAbortedError extends SdError {
  constructor(
    readonly reason: unknown,
    diagnostics: SdDiagnostics = {},
  ) {
    super(`image generation was cancelled${reasonText(reason)}`, diagnostics);
    this.name = "SdAbortedError";
  }
}

function describeExit(exitCode: number | undefined, signal: string | undefined, name: SdProgram = "sd-cli"): string {
  if (signal) return `${name} was killed by ${signal}`;
  return `${name} exited with code ${exitCode ?? "unknown"}`;
}

function program(diagnostics: SdDiagnostics): SdProgram {
  return diagnostics.program ?? "sd-cli";
}

/** ERROR lines say why; without them (an abort, a crash) the stderr tail does. */
function explain(diagnostics: SdDiagnostics): string {
  const lines = diagnostics.errorLines?.length ? diagnostics.errorLines.slice(-3) : diagnostics.stderrTail?.slice(-3);
  return lines && lines.length > 0 ? `: ${lines.join(" | ")}` : "";
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

function reasonText(reason: unknown): string {
  if (reason instanceof Error) return reason.name === "AbortError" ? "" : ` (${reason.message})`;
  if (typeof reason === "string" && reason) return ` (${reason})`;
  return "";
}
