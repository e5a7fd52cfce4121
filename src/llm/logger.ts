import type { Logger } from "../logging/index.js";

/** The little logging the LLM side needs; bootstrap hands it the process' JSON log. */
export interface LlmLogger {
  info(message: string): void;
  warn(message: string): void;
}

/** An LlmLogger writing to a structured log; its `info` is detail, so it goes out at debug. */
export function pinoLlmLogger(logger: Logger): LlmLogger {
  const log = logger.child({ component: "llm" });
  return {
    info: (message) => log.debug(message),
    warn: (message) => log.warn(message),
  };
}

export const silentLlmLogger: LlmLogger = { info: () => {}, warn: () => {} };
