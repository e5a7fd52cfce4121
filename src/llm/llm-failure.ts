import { describeCause, httpStatusOf, isUnreachable } from "./errors.js";
import type { LlmConfig } from "./ollama-client.js";

/**
 * Why an LLM call failed, in words a user can act on. Shared by the prompt refiner and the
 * chat replier: both fall back instead of failing, and tell the user why.
 */

/** The LLM did not answer within refineTimeoutMs (REFINE_TIMEOUT_S). */
export class RefineTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`the LLM did not answer within ${timeoutMs} ms`);
    this.name = "RefineTimeoutError";
  }
}

export function describeLlmFailure(err: unknown, llm: Pick<LlmConfig, "baseUrl" | "model">): string {
  if (err instanceof RefineTimeoutError) return err.message;
  if (isUnreachable(err)) return `Ollama is not reachable at ${llm.baseUrl}`;
  const status = httpStatusOf(err);
  if (status === 404) return `the LLM "${llm.model}" is not installed in Ollama (ollama pull ${llm.model})`;
  const name = err instanceof Error ? err.name : "";
  if (name === "OutputParserException" || name === "ZodError" || name === "SyntaxError") {
    return "the LLM's answer was not valid JSON for the prompt schema";
  }
  if (status !== undefined) return `Ollama answered HTTP ${status} (${describeCause(err)})`;
  return `the LLM request failed (${describeCause(err)})`;
}
