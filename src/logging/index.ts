export { createLogger, processLogger, type Logger, type LoggerOptions, type LogLevel } from "./logger.js";
export { jobLogObserver } from "./job-log-observer.js";
export { gpuSchedulerLog, type GpuSchedulerLog } from "./gpu-log.js";
