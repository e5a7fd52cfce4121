export { JobRunner, type JobRunnerOptions, type StartJobOptions } from "./job-runner.js";
export { JobStore, type ListOptions } from "./job-store.js";
export { isEndEvent, type JobEndEvent, type JobRecord, type JobStatus, type StoredEvent, type StoredImage, type StoredResult } from "./job-record.js";
export { pruneOutputs, removeJobFiles, type RetentionLimits } from "./output-retention.js";
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
export { admitJob } from "./admission.js";
export { EventChannel } from "./event-channel.js";
export { jobLogObserver } from "./job-log-observer.js";
export type { JobInfo, JobObserver } from "./job-observer.js";
