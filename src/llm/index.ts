export { OllamaControl, checkOllama, type LlmState, type OllamaControlOptions, type OllamaHealth, type ResidentModel } from "./ollama-control.js";
export {
  PromptRefiner,
  RefineTimeoutError,
  type ChatDecision,
  type ConversationTurn,
  type PromptRefinerOptions,
  type RefineInput,
  type RefinedPrompt,
} from "./prompt-refiner.js";
export { createChatOllama } from "./chat-model.js";
export { LlmModelNotFoundError, OllamaRequestError, OllamaUnreachableError, UnloadTimeoutError, isUnreachable } from "./errors.js";
export { llmModelOptions, normalizeModelName, sameModel, type LlmConfig } from "./ollama-client.js";
export { looksLikeDrawRequest } from "./draw-intent.js";
export { consoleLlmLogger, pinoLlmLogger, silentLlmLogger, type LlmLogger } from "./logger.js";
export { chatDecisionSchema, refinedPromptSchema } from "./refinement-schema.js";
