export { ServiceMetrics, type GpuStatsSource, type RequestSample, type ServiceMetricsOptions } from "./service-metrics.js";
export type { ServiceStats } from "./service-stats.js";
export { GatewayMetrics, type GatewayCallKind, type GatewayCallSample } from "./gateway-metrics.js";
