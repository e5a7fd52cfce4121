export { OllamaProbe, checkOllama, type OllamaHealth, type OllamaProbeOptions, type ResidentModel } from "./ollama-probe.js";
export { OllamaResidency, type OllamaResidencyOptions } from "./ollama-residency.js";
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
export { pinoLlmLogger, silentLlmLogger, type LlmLogger } from "./logger.js";
export { chatDecisionSchema, refinedPromptSchema } from "./refinement-schema.js";
export { ChatReplier } from "./chat-replier.js";
export { isBackgroundTask } from "./background-task.js";
export { findNvidiaSmi, readComputeApps, readFreeVramMiB, type ComputeApp } from "./nvidia-smi.js";
