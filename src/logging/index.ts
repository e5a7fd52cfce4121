export { createLogger, type Logger, type LoggerOptions, type LogLevel } from "./logger.js";
export { gpuSchedulerLog, type GpuSchedulerLog } from "./gpu-log.js";
