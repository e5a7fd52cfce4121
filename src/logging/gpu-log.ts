import type { Logger } from "./logger.js";

/** What GpuSchedulerOptions.log is called with. */
export type GpuSchedulerLog = (message: string, fields: Record<string, unknown>) => void;

/**
 * The GPU scheduler's log (GpuSchedulerOptions.log) as JSON lines: each swap, LLM out and
 * back in with its duration, at info; failures at warn; grants and releases (several per
 * job) at debug. `jobId` becomes `job_id`, as on every other job line.
 */
export function gpuSchedulerLog(logger: Logger): GpuSchedulerLog {
  const log = logger.child({ component: "gpu" });
  return (message, fields) => {
    const { jobId, ...rest } = fields;
    const level = /failed|threw/.test(message) ? "warn" : /^GPU (granted|released)$|stopped waiting/.test(message) ? "debug" : "info";
    log[level]({ event: "gpu", ...(jobId === undefined ? {} : { job_id: jobId }), ...rest }, message);
  };
}

/**
 * The diffusion backends' log (SdBackendsOptions.log): each sd-server start and stop,
 * with its model, pid and why it stopped, at info (a stop after a failure at warn).
 */
export function sdBackendLog(logger: Logger): GpuSchedulerLog {
  const log = logger.child({ component: "diffusion" });
  return (message, fields) => {
    const level = fields.reason === "failure" ? "warn" : "info";
    log[level]({ event: "sd_backend", ...fields }, message);
  };
}
