import type { GpuLease } from "../../gpu/index.js";

/** A gated LLM call, as the gateway admits it: its id is the jobId of the LLM lease it asks for. */
export interface GatedCall {
  id: string;
  via: "ollama" | "openai";
  /** The route as the client called it (`/api/chat`, `/v1/chat/completions`). */
  route: string;
  model: string;
}

export interface GatedCallEnd {
  /** The answer's status (a refusal's own); null when a relayed stream's status was not seen. */
  status: number | null;
  outcome: string;
}

/**
 * Watches the gateway's gated calls without taking part (the operator page's event stream):
 * told when a call is admitted (it then waits for, or takes, an LLM lease) and when it is
 * over. Called synchronously; must not throw.
 */
export interface GatewayCallObserver {
  callAdmitted(call: GatedCall): void;
  callEnded(callId: string, end: GatedCallEnd): void;
}

export const noGatewayObserver: GatewayCallObserver = { callAdmitted: () => undefined, callEnded: () => undefined };

/** One call's side of the observer (observeGatedCall). */
export interface WatchedCall {
  /** The answer's status once Ollama gave it, for an end reported later (`lease`). */
  status: number | null;
  /** Reports the end, once, whichever path gets there first. */
  end(outcome: string, status?: number | null): void;
  /** The same lease, reporting the end when it is given back (for paths that hand the lease on). */
  lease(lease: GpuLease): GpuLease;
}

/** Tells the observer a call was admitted; the returned handle tells it the end. */
export function observeGatedCall(observer: GatewayCallObserver, call: GatedCall): WatchedCall {
  let ended = false;
  observer.callAdmitted(call);
  const watch: WatchedCall = {
    status: null,
    end(outcome, status = watch.status) {
      if (ended) return;
      ended = true;
      observer.callEnded(call.id, { status, outcome });
    },
    lease(lease) {
      return {
        jobId: lease.jobId,
        phase: lease.phase,
        grantedAt: lease.grantedAt,
        waitedMs: lease.waitedMs,
        get released() {
          return lease.released;
        },
        release() {
          watch.end("completed");
          return lease.release();
        },
        async [Symbol.asyncDispose]() {
          watch.end("completed");
          await lease.release();
        },
      };
    },
  };
  return watch;
}
