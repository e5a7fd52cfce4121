/** The little logging the LLM side needs; the server passes its own logger in. */
export interface LlmLogger {
  info(message: string): void;
  warn(message: string): void;
}

/** Default: warnings to stderr (an unreachable Ollama must not go unnoticed), info dropped. */
export const consoleLlmLogger: LlmLogger = {
  info: () => {},
  warn: (message) => console.warn(`[llm] ${message}`),
};

export const silentLlmLogger: LlmLogger = { info: () => {}, warn: () => {} };
