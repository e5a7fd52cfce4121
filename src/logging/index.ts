export {
  createLogger,
  fileLogDestination,
  logFilePath,
  type DestinationStream,
  type Logger,
  type LoggerOptions,
  type LogLevel,
} from "./logger.js";
export { gpuSchedulerLog, sdBackendLog, type GpuSchedulerLog } from "./gpu-log.js";
