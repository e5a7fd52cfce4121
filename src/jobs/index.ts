export { JobRunner, type StartJobOptions } from "./job-runner.js";
export {
  JobRejectedError,
  graphStreamModes,
  type GraphStreamMode,
  type Job,
  type JobEvent,
  type JobInput,
  type JobOutcome,
  type JobResult,
  type RawJobInput,
  type RefinedPromptValue,
} from "./job.js";
export { preflight, estimateRetryAfterSeconds } from "./preflight.js";
export { locateExecutable } from "./executable.js";
export { EventChannel } from "./event-channel.js";
export { sdCliVersion, type SdCliVersion } from "./sd-version.js";
export type { JobInfo, JobObserver } from "./job-observer.js";
