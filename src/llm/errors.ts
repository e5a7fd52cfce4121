/**
 * Typed failures of the LLM side. The GPU scheduler and the graph branch on these
 * classes (not on message text), so each one carries what its handler needs.
 */

/** Ollama did not answer at all (connection refused, host unknown, network down). */
export class OllamaUnreachableError extends Error {
  constructor(
    readonly baseUrl: string,
    options?: { cause?: unknown },
  ) {
    super(`Ollama is not reachable at ${baseUrl} (${describeCause(options?.cause)})`, options);
    this.name = "OllamaUnreachableError";
  }
}

/** Ollama answered with an HTTP error, or broke off a stream with an error line. */
export class OllamaRequestError extends Error {
  constructor(
    message: string,
    /** HTTP status; undefined for errors inside a 200 stream or a broken connection. */
    readonly status: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "OllamaRequestError";
  }
}

/** The configured LLM is not installed in Ollama (HTTP 404 on load or chat). */
export class LlmModelNotFoundError extends Error {
  constructor(
    readonly model: string,
    readonly baseUrl: string,
    options?: { cause?: unknown },
  ) {
    super(
      `The LLM "${model}" is not installed in Ollama at ${baseUrl}. ` +
        `Install it with: ollama pull ${model} (or set LLM_MODEL to a model listed by "ollama list").`,
      options,
    );
    this.name = "LlmModelNotFoundError";
  }
}

/**
 * Ollama accepted the unload but /api/ps still listed these models when the
 * timeout ran out: starting sd.cpp now would run it out of memory.
 */
export class UnloadTimeoutError extends Error {
  constructor(
    /** Models still listed by /api/ps at the deadline. */
    readonly models: string[],
    readonly timeoutMs: number,
    options?: { cause?: unknown },
  ) {
    super(
      `Ollama did not unload ${models.join(", ")} within ${timeoutMs} ms ` +
        `(still listed by /api/ps); refusing to start diffusion while the LLM may hold VRAM.`,
      options,
    );
    this.name = "UnloadTimeoutError";
  }
}

/**
 * Ollama broke off a connection it had accepted (reset, closed mid-answer): it crashed, is
 * restarting, or a proxy in between dropped it. Unlike "unreachable", a process was there
 * and may still hold a model in VRAM, so this is never taken for "nothing to unload".
 */
export class OllamaConnectionLostError extends OllamaRequestError {
  constructor(
    readonly baseUrl: string,
    /** What we were doing, for the message ("unloading the LLM"). */
    readonly during: string,
    options?: { cause?: unknown },
  ) {
    super(
      `Ollama at ${baseUrl} broke off the connection while ${during} (${describeCause(options?.cause)}): ` +
        `it may have crashed or be restarting, and may still hold the LLM in VRAM, so no image was started. ` +
        `Check that Ollama is running and answering (ollama ps, or GET ${baseUrl}/api/ps; its log says why it stopped), then try again.`,
      undefined,
      options,
    );
    this.name = "OllamaConnectionLostError";
  }
}

const connectionLostCodes = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED", "UND_ERR_SOCKET", "UND_ERR_CLOSED"]);

/**
 * True when Ollama accepted the connection and then broke it off (reset, or closed before
 * answering in full): it may be up, or coming back, and holding a model.
 */
export function isConnectionLost(err: unknown): boolean {
  return !isUnreachable(err) && findErrorCode(err, (code) => connectionLostCodes.has(code)) !== undefined;
}

const unreachableCodes = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/**
 * True when the request never reached an Ollama process: nothing is listening or the
 * host cannot be found. A connection reset or a timeout is NOT "unreachable": Ollama
 * may be up and holding a model.
 */
export function isUnreachable(err: unknown): boolean {
  return findErrorCode(err, (code) => unreachableCodes.has(code)) !== undefined;
}

/** The first `code` found on an error, its causes, or an AggregateError's members. */
export function findErrorCode(err: unknown, accept: (code: string) => boolean = () => true, depth = 0): string | undefined {
  if (depth > 6 || err === null || typeof err !== "object") return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && accept(code)) return code;
  const nested = (err as { errors?: unknown }).errors;
  if (Array.isArray(nested)) {
    for (const e of nested) {
      const found = findErrorCode(e, accept, depth + 1);
      if (found !== undefined) return found;
    }
  }
  return findErrorCode((err as { cause?: unknown }).cause, accept, depth + 1);
}

/** HTTP status of an `ollama` client ResponseError (or one of ours), if any. */
export function httpStatusOf(err: unknown): number | undefined {
  if (err === null || typeof err !== "object") return undefined;
  const status = (err as { status_code?: unknown; status?: unknown }).status_code ?? (err as { status?: unknown }).status;
  return typeof status === "number" ? status : undefined;
}

/**
 * Our typed error for a failed Ollama request (the caller's abort reason when it aborted).
 * With `model`, a 404 means that model is not installed.
 */
export function ollamaRequestFailure(err: unknown, signal: AbortSignal | undefined, baseUrl: string, model?: string): unknown {
  if (signal?.aborted) return signal.reason;
  if (isUnreachable(err)) return new OllamaUnreachableError(baseUrl, { cause: err });
  const status = httpStatusOf(err);
  if (model !== undefined && status === 404) return new LlmModelNotFoundError(model, baseUrl, { cause: err });
  return new OllamaRequestError(`Ollama request failed: ${describeCause(err)}`, status, { cause: err });
}

export function describeCause(cause: unknown): string {
  const code = findErrorCode(cause);
  const message = cause instanceof Error ? cause.message : cause === undefined ? "" : String(cause);
  if (code && !message.includes(code)) return message ? `${code}: ${message}` : code;
  return message || "unknown error";
}

/** True for the error an aborted signal produces (ours or the platform's). */
export function isAbortError(err: unknown): boolean {
  return err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
}
