export {
  generateImages,
  type GenerateImagesOptions,
  type GenerationResult,
  type SdBackendKind,
} from "./generate-images.js";
export {
  SdBackends,
  type SdBackendChoice,
  type SdBackendUnavailable,
  type SdBackendGenerateOptions,
  type SdBackendStats,
  type SdBackendsHealth,
} from "./sd-backends.js";
export type { SdServerStatus, SdServerStopReason } from "./sd-server/sd-server-backend.js";
export type { SdServerState } from "./sd-server/sd-server-process.js";
export {
  generationRequestSchema,
  parseGenerationRequest,
  resolveGenerationParams,
  withPrompt,
  drawRandomSeed,
  maxPromptLength,
  maxBatchCount,
  maxSeed,
  type GenerationRequest,
  type GenerationParams,
  type ResolveOptions,
} from "./generation-request.js";
export { samplingMethods, schedulers, previewModes, type SamplingMethod, type Scheduler, type PreviewMode } from "./sampling-options.js";
export { buildSdArgs, type SdArgsOptions } from "./sd-args.js";
export { SdOutputParser, type SdOutputSummary } from "./sd-output-parser.js";
export * from "./sd-events.js";
export { describeSdEvent } from "./sd-event-message.js";
export {
  runSdCli,
  defaultKillGraceMs,
  type SdRunOptions,
  type SdRunResult,
  type SdImage,
  type SdTimings,
} from "./sd-runner.js";
export { PreviewWatcher } from "./preview-watcher.js";
export { completePngInfo } from "./png-check.js";
export { parseLoraTags, type LoraTag } from "./lora-tags.js";
export { batchOutputPaths, newOutputPath, outputTagFor, outputTagOf } from "./output-paths.js";
export { isOutOfMemoryLine } from "./oom-patterns.js";
export { sdCliVersion, type SdCliVersion } from "./sd-version.js";
export * from "./errors.js";
export { VramNeeds, vramNeedKey, estimateVramMiB, type VramNeedEstimate, type VramNeedStore } from "./vram-needs.js";
