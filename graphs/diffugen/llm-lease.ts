import type { GpuLease } from "../../src/gpu/index.js";
import type { NodeKit } from "./node-kit.js";
import { fromGpuEvent } from "./progress.js";

/**
 * Every LLM call of a node runs holding an LLM lease from the GPU scheduler: no LLM call may
 * reach Ollama while an image job holds the GPU (DESIGN.md, the invariant).
 */

/**
 * Runs `call` holding an LLM lease: the one an earlier node of this run kept for it
 * (`kit.llmLease`), else a new one, waited for with the queue reported. The lease is given
 * back when the call ends, whichever way, unless `keep` says the next node needs it.
 */
export async function withLlm<T>(kit: NodeKit, signal: AbortSignal, call: () => Promise<T>, keep?: (result: T) => boolean): Promise<T> {
  const lease = kit.llmLease.claim() ?? (await acquireLlm(kit, signal));
  let kept = false;
  try {
    const result = await call();
    if (keep?.(result)) {
      kit.llmLease.hold(lease);
      kept = true;
    }
    return result;
  } finally {
    if (!kept) {
      void kit.llmLease.release();
      await lease.release();
    }
  }
}

function acquireLlm(kit: NodeKit, signal: AbortSignal): Promise<GpuLease> {
  return kit.deps.scheduler.acquire("llm", {
    jobId: kit.jobId,
    signal,
    onEvent: (event) => {
      const progress = fromGpuEvent(event);
      if (progress) kit.emit(progress);
    },
  });
}
