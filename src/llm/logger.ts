import { processLogger, type Logger } from "../logging/index.js";

/** The little logging the LLM side needs; the server passes its own logger in. */
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

/**
 * Default: the process' JSON log (stderr, LOG_LEVEL). Warnings always show at the default
 * level (an unreachable Ollama must not go unnoticed); info only at LOG_LEVEL=debug.
 * (The name is older than the JSON log: it once wrote to the console.)
 */
export const consoleLlmLogger: LlmLogger = {
  info: (message) => processLlmLogger().info(message),
  warn: (message) => processLlmLogger().warn(message),
};

/** Built on first use: importing this module opens nothing. */
let processLlm: LlmLogger | undefined;
const processLlmLogger = (): LlmLogger => (processLlm ??= pinoLlmLogger(processLogger()));

export const silentLlmLogger: LlmLogger = { info: () => {}, warn: () => {} };
