export { JobRunner, type StartJobOptions } from "./job-runner.js";
export {
  JobRejectedError,
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
