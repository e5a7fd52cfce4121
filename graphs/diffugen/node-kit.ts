import type { LangGraphRunnableConfig, Runtime } from "@langchain/langgraph";
import { progressIn, type Phase } from "../../src/events/progress-event.js";
import type { DiffugenDeps } from "./dependencies.js";
import { progressWriter, type EmitProgress } from "./progress.js";
import { isRunContext, type AdmittedRequest, type DiffugenRunContext, type LeaseSlot } from "./run-context.js";
import { toRunError } from "./run-error.js";
import type { DiffugenStateUpdate, DiffugenStateValue, RunError } from "./state.js";

/** What every node gets from LangGraph: the run context, the custom-stream writer, signals. */
export type NodeRuntime = Runtime<DiffugenRunContext> & LangGraphRunnableConfig;

export interface NodeKit {
  deps: DiffugenDeps;
  emit: EmitProgress;
  jobId: string;
  /** This run's diffusion lease (run-context.ts). */
  lease: LeaseSlot;
  /** The LLM lease `refine` keeps for `reply` (run-context.ts). */
  llmLease: LeaseSlot;
  /** The request as admission resolved it, if the run was admitted. */
  admitted: AdmittedRequest | undefined;
  /** The whole run's signal (a node's own runtime.signal ends with the node). */
  runSignal: AbortSignal;
  /** `timings` with this node's duration added. */
  timed(): Record<string, number>;
  /** Records a failure: emits the error event and returns the state update for it. */
  fail(err: unknown, phase?: Phase): DiffugenStateUpdate;
  /** Rethrows when the run was cancelled: a cancelled run ends, it is not a failure to record. */
  throwIfCancelled(): void;
}

export function nodeKit(node: string, state: DiffugenStateValue, runtime: NodeRuntime): NodeKit {
  const run = runContextOf(runtime);
  const started = Date.now();
  const emit = progressWriter(runtime);
  const timed = () => ({ ...state.timings, [node]: Date.now() - started });
  return {
    deps: run.deps,
    emit,
    jobId: state.jobId ?? "unknown-job",
    lease: run.lease,
    llmLease: run.llmLease,
    admitted: run.admitted,
    runSignal: run.signal,
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
    throwIfCancelled() {
      if (run.signal.aborted) throw run.signal.reason;
    },
  };
}

function runContextOf(runtime: NodeRuntime): DiffugenRunContext {
  const context: unknown = runtime.context;
  if (isRunContext(context)) return context;
  // Every entry point makes one (src/bootstrap, graphs/studio.ts): a run without it could
  // not keep its GPU lease between nodes.
  throw new Error("the DiffuGen graph runs only with a run context: pass createRunContext(deps, signal) as `context`");
}
