import type { LangGraphRunnableConfig, Runtime } from "@langchain/langgraph";
import { progressIn, type Phase } from "../../src/events/progress-event.js";
import { depsOf, type DiffugenContext, type DiffugenDeps } from "./dependencies.js";
import { LeaseBook } from "./lease-book.js";
import { progressWriter, type EmitProgress } from "./progress.js";
import { toRunError } from "./run-error.js";
import type { DiffugenStateUpdate, DiffugenStateValue, RunError } from "./state.js";

/** What every node gets from LangGraph: the run context, the custom-stream writer, signals. */
export type NodeRuntime = Runtime<DiffugenContext> & LangGraphRunnableConfig;

export interface NodeKit {
  deps: DiffugenDeps;
  emit: EmitProgress;
  jobId: string;
  /** Aborts when the run is cancelled (also after this node ends, unlike runtime.signal). */
  runSignal: AbortSignal | undefined;
  /** `timings` with this node's duration added. */
  timed(): Record<string, number>;
  /** Records a failure: emits the error event and returns the state update for it. */
  fail(err: unknown, phase?: Phase): DiffugenStateUpdate;
}

/** One lease book for the process: job ids are unique, and a lease outlives the node that took it. */
export const leaseBook = new LeaseBook();

export function nodeKit(node: string, state: DiffugenStateValue, runtime: NodeRuntime): NodeKit {
  const started = Date.now();
  const emit = progressWriter(runtime);
  const timed = () => ({ ...state.timings, [node]: Date.now() - started });
  return {
    deps: depsOf(runtime),
    emit,
    jobId: state.jobId ?? "unknown-job",
    runSignal: runSignalOf(runtime),
    timed,
    fail(err, phase = "error") {
      const error: RunError = toRunError(err, node);
      emit({
        kind: "error",
        phase,
        progress: progressIn("error"),
        message: error.message,
        error: { code: error.code, message: error.message },
        at: Date.now(),
      });
      return { error, timings: timed() };
    },
  };
}

/**
 * The signal of the whole run. `runtime.signal` is the node's own and is detached when the
 * node returns, so it cannot guard something (a GPU lease) that spans nodes. LangGraph
 * keeps the run's external signal under this configurable key (pregel/runner.js); tests
 * in tests/unit/graphs pin that behaviour down, so an upgrade that moves it is caught.
 */
function runSignalOf(runtime: NodeRuntime): AbortSignal | undefined {
  const signals = runtime.configurable?.["__pregel_abort_signals"] as { externalAbortSignal?: AbortSignal } | undefined;
  return signals?.externalAbortSignal ?? runtime.signal;
}

/** Rethrows when the run was cancelled: a cancelled run ends, it is not a failure to record. */
export function throwIfCancelled(runtime: NodeRuntime): void {
  const signal = runSignalOf(runtime);
  if (signal?.aborted) throw signal.reason;
}
