import {
  InvalidGenerationParamsError,
  SdAbortedError,
  SdOutOfMemoryError,
  SdProcessError,
  SdSpawnError,
  SdTimeoutError,
} from "../../src/diffusion/index.js";
import { AcquireAbortedError, QueueFullError, SchedulerClosedError } from "../../src/gpu/index.js";
import { OllamaConnectionLostError } from "../../src/llm/errors.js";
import { LlmModelNotFoundError, UnloadTimeoutError } from "../../src/llm/index.js";
import { ModelFilesMissingError, UnknownModelError } from "../../src/models/index.js";
import type { RunError } from "./state.js";

/**
 * A failure as the run's state records it: a stable code an API layer maps to its own
 * status and shape, the readable message (which already carries sd-cli's own error line),
 * and the request field at fault when there is one.
 */
export function toRunError(err: unknown, node: string): RunError {
  const message = err instanceof Error ? err.message : String(err);
  const code = errorCode(err);
  const param = err instanceof InvalidGenerationParamsError ? err.param : err instanceof UnknownModelError ? "model" : undefined;
  return param === undefined ? { code, message, node } : { code, message, param, node };
}

export const runErrorCodes = [
  "invalid_request",
  "model_not_found",
  "model_files_missing",
  "queue_full",
  "unload_timeout",
  "llm_model_not_found",
  /** Ollama broke off the connection while the LLM was being moved out: nothing was drawn. */
  "llm_unavailable",
  "out_of_memory",
  "timeout",
  "cancelled",
  "sd_not_found",
  "sd_server_not_found",
  "sd_failed",
  "shutting_down",
  "internal",
] as const;
export type RunErrorCode = (typeof runErrorCodes)[number];

function errorCode(err: unknown): RunErrorCode {
  if (err instanceof InvalidGenerationParamsError) return "invalid_request";
  if (err instanceof UnknownModelError) return "model_not_found";
  if (err instanceof ModelFilesMissingError) return "model_files_missing";
  if (err instanceof QueueFullError) return "queue_full";
  if (err instanceof UnloadTimeoutError) return "unload_timeout";
  if (err instanceof LlmModelNotFoundError) return "llm_model_not_found";
  if (err instanceof OllamaConnectionLostError) return "llm_unavailable";
  if (err instanceof SdOutOfMemoryError) return "out_of_memory";
  if (err instanceof SdTimeoutError) return "timeout";
  if (err instanceof SdAbortedError || err instanceof AcquireAbortedError) return "cancelled";
  if (err instanceof SdSpawnError) return err.program === "sd-server" ? "sd_server_not_found" : "sd_not_found";
  if (err instanceof SdProcessError) return "sd_failed";
  if (err instanceof SchedulerClosedError) return "shutting_down";
  return "internal";
}
