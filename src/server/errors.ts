import type { RunErrorCode } from "../../graphs/diffugen/run-error.js";
import type { RunError } from "../../graphs/diffugen/state.js";
import { JobRejectedError } from "../jobs/index.js";

/**
 * Errors as each dialect's clients expect them. OpenAI clients get
 * `{"error":{"message","type","param","code"}}` with a status the SDK acts on (it retries
 * 408/409/429/5xx unless `x-should-retry: false`); the original DiffuGen API keeps
 * `{"success":false,"error":"..."}`. Handlers throw ApiError; the app's error handler
 * shapes it for the route's dialect.
 */

export type Dialect = "openai" | "diffugen";

export interface ApiErrorDetails {
  /** OpenAI's error type: invalid_request_error, rate_limit_error, server_error... */
  type?: string;
  code?: string | null;
  /** The request field at fault, in the dialect's own spelling. */
  param?: string | null;
  retryAfterSeconds?: number | undefined;
  /** Whether repeating the same request can succeed (otherwise `x-should-retry: false`). */
  retryable?: boolean;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details: ApiErrorDetails = {},
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export function invalidRequest(message: string, param: string | null = null, code: string | null = "invalid_value"): ApiError {
  return new ApiError(400, message, { type: "invalid_request_error", param, code });
}

interface StatusRule {
  status: number;
  type: string;
  retryable: boolean;
  /** Retry-After when the run does not say (seconds). */
  retryAfterSeconds?: number;
}

const serverError = (status: number, retryable = false, retryAfterSeconds?: number): StatusRule => ({
  status,
  type: "server_error",
  retryable,
  ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
});

/**
 * Run error code → HTTP. Model files missing is 503, not 400: the request is valid and the
 * model is known, this server just lacks its weights until someone installs them (no retry
 * helps). Out of memory, sd-cli crashes and timeouts are not retried either: a retry would
 * cost the same GPU minutes and most likely fail the same way.
 */
const runErrorRules: Record<RunErrorCode, StatusRule> = {
  invalid_request: { status: 400, type: "invalid_request_error", retryable: false },
  model_not_found: { status: 404, type: "invalid_request_error", retryable: false },
  model_files_missing: serverError(503),
  queue_full: { status: 429, type: "rate_limit_error", retryable: true },
  unload_timeout: serverError(503, true),
  llm_model_not_found: serverError(503),
  // Ollama broke off the connection during the unload (crashed, restarting): diffusion did
  // not start, as it may still hold VRAM. Once it is back, the same request works.
  llm_unavailable: serverError(503, true, 10),
  out_of_memory: serverError(500),
  timeout: serverError(504),
  cancelled: { status: 499, type: "invalid_request_error", retryable: false },
  sd_not_found: serverError(503),
  sd_server_not_found: serverError(503),
  sd_failed: serverError(500),
  shutting_down: serverError(503, true),
  internal: serverError(500),
};

/** Generation request field → the dialect's name for it (derived from its field table, src/server/fields). */
export type ParamNames = Readonly<Record<string, string>>;

/** A run error as an API error; `params` renames the request fields for the dialect. */
export function apiErrorFromRun(error: RunError, options: { params?: ParamNames; retryAfterSeconds?: number | undefined } = {}): ApiError {
  const rule = runErrorRules[error.code as RunErrorCode] ?? runErrorRules.internal;
  const param = error.param === undefined ? null : renamedParam(options.params, error.param);
  return new ApiError(rule.status, error.message, {
    type: rule.type,
    code: error.code,
    param,
    retryable: rule.retryable,
    retryAfterSeconds: options.retryAfterSeconds ?? rule.retryAfterSeconds,
  });
}

/**
 * The dialect's name for a request field. Own entries only: a field a client named
 * `constructor` or `__proto__` must not pick up Object.prototype's members (a function
 * as `param` broke the error's shape and the graph stream's handler).
 */
export function renamedParam(params: ParamNames | undefined, name: string): string {
  return params !== undefined && Object.hasOwn(params, name) ? (params[name] ?? name) : name;
}

/** Rethrows a refused job as the API error for it. */
export function rethrowRejection(err: unknown, params?: ParamNames): never {
  if (err instanceof JobRejectedError) {
    throw apiErrorFromRun(err.error, { params, retryAfterSeconds: err.retryAfterSeconds });
  }
  throw err;
}

/**
 * The seed API's routes (`/generate...`) answer in its own shape. Everything under /v1 is
 * OpenAI-compatible, /v1/images/generations/stream (the seed API's events for an OpenAI
 * body) included: OpenAI clients read its errors.
 */
export function dialectOf(pathname: string): Dialect {
  return /^\/generate(\/|$)/.test(pathname) ? "diffugen" : "openai";
}

export function errorBody(err: ApiError, dialect: Dialect): Record<string, unknown> {
  if (dialect === "diffugen") {
    return {
      success: false,
      error: err.message,
      code: err.details.code ?? null,
      markdown_response: `Error generating image: ${err.message}`,
    };
  }
  return {
    error: {
      message: err.message,
      type: err.details.type ?? (err.status >= 500 ? "server_error" : "invalid_request_error"),
      param: err.details.param ?? null,
      code: err.details.code ?? null,
    },
  };
}

export function errorHeaders(err: ApiError): Record<string, string> {
  const headers: Record<string, string> = {};
  if (err.details.retryAfterSeconds !== undefined) headers["Retry-After"] = String(Math.max(1, Math.ceil(err.details.retryAfterSeconds)));
  const retryable = err.details.retryable ?? (err.status === 429 || err.status >= 500);
  if (!retryable) headers["x-should-retry"] = "false";
  if (err.status === 401) headers["WWW-Authenticate"] = 'Bearer realm="diffugen"';
  return headers;
}

export function errorResponse(err: ApiError, dialect: Dialect): Response {
  return new Response(JSON.stringify(errorBody(err, dialect)), {
    status: err.status,
    headers: { "Content-Type": "application/json; charset=UTF-8", ...errorHeaders(err) },
  });
}

/** Anything thrown in a handler, as an API error (unexpected ones are 500s, logged). */
export function toApiError(err: unknown, log: (message: string) => void): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof JobRejectedError) return apiErrorFromRun(err.error, { retryAfterSeconds: err.retryAfterSeconds });
  log(`[diffugen] unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return new ApiError(500, "Internal server error", { type: "server_error", code: "internal", retryable: false });
}
