import { ChatOllama } from "@langchain/ollama";
import { abortableFetch, llmModelOptions, type LlmConfig } from "./ollama-client.js";

/**
 * The one way this service builds a ChatOllama, so every LLM call carries the same
 * model, keep_alive and num_ctx as OllamaResidency's reload (a different num_ctx
 * would make Ollama reload the model), with thinking off (Qwen3 thinks by default,
 * which only costs time when rewriting a prompt).
 *
 * `signal` is wired into the HTTP requests themselves: ChatOllama only checks its
 * signal between stream chunks, so without this an abandoned call would keep Ollama
 * generating, and a busy runner delays the next unload.
 */
export function createChatOllama(llm: LlmConfig, opts: { signal?: AbortSignal | undefined } = {}): ChatOllama {
  const numCtx = llmModelOptions(llm).num_ctx;
  return new ChatOllama({
    baseUrl: llm.baseUrl,
    model: llm.model,
    keepAlive: llm.keepAlive,
    think: false,
    ...(numCtx === undefined ? {} : { numCtx }),
    fetch: abortableFetch({ signal: opts.signal }),
    maxRetries: 0,
  });
}
