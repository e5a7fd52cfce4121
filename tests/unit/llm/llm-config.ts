import type { LlmConfig } from "../../../src/llm/ollama-client.js";

/** The LLM settings these tests run with, against a fake Ollama at `url`. */
export function llmConfig(url: string, overrides: Partial<LlmConfig> = {}): LlmConfig {
  return {
    baseUrl: url,
    model: "qwen2.5:3b",
    keepAlive: -1,
    numCtx: 8192,
    refineTimeoutMs: 5_000,
    unloadTimeoutMs: 3_000,
    nvidiaSmi: undefined,
    ...overrides,
  };
}
