export { ServiceMetrics, type GpuStatsSource, type RequestSample, type ServiceMetricsOptions } from "./service-metrics.js";
export type { ServiceStats } from "./service-stats.js";
