import { nodeKit, type NodeRuntime } from "../node-kit.js";
import { progressIn } from "../../../src/events/progress-event.js";
import { fromGpuEvent } from "../progress.js";
import { vramNeedOf } from "../vram-need.js";
import type { DiffugenStateUpdate, DiffugenStateValue } from "../state.js";

/**
 * unload: ask the GPU scheduler for the diffusion phase. The scheduler moves the LLM out
 * of VRAM and grants the GPU only once Ollama confirms it is gone; this node only waits
 * (reporting the queue) and keeps the lease for `diffuse`. A warning the unload came with
 * (drawn although Ollama broke off the connection) goes into the run's warnings.
 */
export async function unload(state: DiffugenStateValue, runtime: NodeRuntime): Promise<DiffugenStateUpdate> {
  const kit = nodeKit("unload", state, runtime);
  const warnings: string[] = [];
  try {
    const lease = await kit.deps.scheduler.acquire("diffusion", {
      jobId: kit.jobId,
      signal: runtime.signal,
      // VRAM_POLICY=fit: what this drawing will hold, so the scheduler can tell whether it fits beside the LLM.
      need: vramNeedOf(kit.deps, state, kit.admitted?.previews),
      onEvent: (event) => {
        if (event.type === "llm_unloaded" && event.warning !== undefined) warnings.push(event.warning);
        const progress = fromGpuEvent(event, progressIn("unloading_llm"));
        if (progress) kit.emit(progress);
      },
    });
    kit.lease.hold(lease);
  } catch (err) {
    kit.throwIfCancelled();
    // Nothing is held: the scheduler has already put the LLM back if it had moved it.
    return kit.fail(err);
  }
  return { ...(warnings.length > 0 ? { warnings: [...state.warnings, ...warnings] } : {}), timings: kit.timed() };
}
