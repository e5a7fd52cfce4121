export * from "./errors.js";
export { downloadFile, sha256Of, parseContentRange, type DownloadOptions, type DownloadResult } from "./download.js";
export { createDownloadDisplay, formatBytes, formatDuration, type DownloadDisplay } from "./download-progress.js";
export { authHeadersFor, effectiveUrl, gatedAdvice, hfEnv, isHuggingFaceUrl, repoPageOf, type HfEnv } from "./hugging-face.js";
export {
  builtinModelSources,
  loadModelSources,
  ModelSourcesError,
  sourceFor,
  type FileSource,
  type ModelSources,
  type SourceCatalog,
} from "./model-sources.js";
export {
  modelFileStatus,
  pullModel,
  PullError,
  type ModelFileStatus,
  type PullOptions,
  type PullReporter,
  type PullResult,
} from "./pull-models.js";
export {
  assetStem,
  defaultReleasesUrl,
  detectVariant,
  NoReleaseAssetError,
  resolveReleaseAsset,
  sdCppRelease,
  sdVariants,
  type ProbeRunner,
  type ReleaseAsset,
  type SdVariant,
  type VariantDetection,
} from "./sd-release.js";
export {
  checkSdCli,
  findSdBinary,
  installDirFor,
  installSdCpp,
  ReleaseContentError,
  SdCliCheckError,
  type InstallOptions,
  type InstallResult,
} from "./install-sd-cpp.js";
