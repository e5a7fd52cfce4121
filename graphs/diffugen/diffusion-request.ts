import { progressIn } from "../../src/events/progress-event.js";
import type { GpuEvent } from "../../src/gpu/index.js";
import type { NodeKit } from "./node-kit.js";
import { fromGpuEvent } from "./progress.js";
import type { DiffugenStateValue } from "./state.js";
import { vramNeedOf } from "./vram-need.js";

/**
 * The diffusion lease: asked for by `refine` as soon as the run will draw, waited for by
 * `unload`, used and given back by `diffuse`. Only a confirmed unload gets it granted
 * (the scheduler's rule), so asking early never puts sd.cpp beside the LLM; it only lets
 * the unload start one LangGraph step sooner.
 */

/** What is drawn: the scheduler's fit check (VRAM_POLICY=fit) needs its model and parameters. */
type Drawing = Pick<DiffugenStateValue, "model" | "params">;

/** `refine`, once it will draw: asks for the GPU for diffusion, for `unload` to wait for. */
export function requestDiffusion(kit: NodeKit, drawing: Drawing): void {
  const { scheduler } = kit.deps;
  const need = vramNeedOf(kit.deps, drawing, kit.admitted?.previews);
  kit.lease.requestEarly((onEvent) => scheduler.acquire("diffusion", { jobId: kit.jobId, signal: kit.runSignal, need, onEvent }));
}

/**
 * `unload`: waits for the diffusion lease (asked for by `refine`, or now when it was not)
 * and keeps it for `diffuse`; every scheduler event on the way is reported as progress.
 * Rejects as the scheduler's acquire does.
 */
export async function awaitDiffusion(kit: NodeKit, drawing: Drawing, signal: AbortSignal, onEvent: (event: GpuEvent) => void): Promise<void> {
  const report = (event: GpuEvent) => {
    onEvent(event);
    const progress = fromGpuEvent(event, progressIn("unloading_llm"));
    if (progress) kit.emit(progress);
  };
  const early = kit.lease.takeEarly();
  if (early) {
    // The grant is held in the slot as it comes (run-context.ts): nothing to do but wait.
    await early.granted(report);
    return;
  }
  const need = vramNeedOf(kit.deps, drawing, kit.admitted?.previews);
  kit.lease.hold(await kit.deps.scheduler.acquire("diffusion", { jobId: kit.jobId, signal, need, onEvent: report }));
}
