import { awaitDiffusion } from "../diffusion-request.js";
import { nodeKit, type NodeRuntime } from "../node-kit.js";
import type { DiffugenStateUpdate, DiffugenStateValue } from "../state.js";

/**
 * unload: wait for the diffusion phase. The scheduler moves the LLM out of VRAM and grants
 * the GPU only once Ollama confirms it is gone; `refine` asked for it already when it knew
 * the run would draw (diffusion-request.ts), so the unload is under way by now. This node
 * waits (reporting the queue and the unload) and keeps the lease for `diffuse`. A warning
 * the unload came with (drawn although Ollama broke off the connection) goes into the run's
 * warnings.
 */
export async function unload(state: DiffugenStateValue, runtime: NodeRuntime): Promise<DiffugenStateUpdate> {
  const kit = nodeKit("unload", state, runtime);
  const warnings: string[] = [];
  try {
    await awaitDiffusion(kit, state, runtime.signal, (event) => {
      if (event.type === "llm_unloaded" && event.warning !== undefined) warnings.push(event.warning);
    });
  } catch (err) {
    kit.throwIfCancelled();
    // Nothing is held: the scheduler has already put the LLM back if it had moved it.
    return kit.fail(err);
  }
  return { ...(warnings.length > 0 ? { warnings: [...state.warnings, ...warnings] } : {}), timings: kit.timed() };
}
