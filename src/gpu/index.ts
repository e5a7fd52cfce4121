export {
  GpuScheduler,
  DEFAULT_MAX_BATCH,
  DEFAULT_MAX_QUEUE,
  type AcquireOptions,
  type GpuSchedulerOptions,
  type HolderChangeListener,
  type StateChangeListener,
} from "./gpu-scheduler.js";
export {
  BypassWatchdog,
  DEFAULT_BYPASS_POLL_MS,
  type BypassWatchdogOptions,
  type GateBypass,
  type GateStatus,
  type HolderChangeSource,
  type ResidentModelSource,
} from "./bypass-watchdog.js";
export type { GpuLease, ReleaseOutcome } from "./gpu-lease.js";
export type { GpuEvent, GpuEventListener, GpuEventType, GpuPhase } from "./gpu-events.js";
export type { LlmState, LlmStateSnapshot } from "./llm-state.js";
export type {
  DurationSummary,
  GpuHolderState,
  GpuSchedulerState,
  GpuSchedulerStats,
  QueuedJob,
} from "./scheduler-stats.js";
export type { LlmResidency, ReloadReport, UnloadReport } from "./llm-residency.js";
export type { DiffusionResidency } from "./diffusion-residency.js";
export type { FitAdvisor, FitDecision, VramNeed } from "./fit-advisor.js";
export {
  AcquireAbortedError,
  GpuInvariantError,
  GpuSchedulerError,
  LeaseConflictError,
  LlmUnloadFailedError,
  QueueFullError,
  SchedulerClosedError,
} from "./errors.js";
export { acquireGpuOwnerLock, GpuOwnedElsewhereError, type GpuOwnerLock } from "./gpu-owner-lock.js";
export { VramLedger, type ResidentLlm, type VramLedgerOptions, type VramSnapshot } from "./vram-ledger.js";
export { nvidiaSmiMemory, rocmSmiMemory, parseNvidiaSmiMemory, parseRocmSmiMemory, type GpuMemory, type GpuMemoryReader } from "./gpu-memory.js";
