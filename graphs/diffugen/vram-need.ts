import type { VramNeed } from "../../src/gpu/index.js";
import type { DiffugenDeps } from "./dependencies.js";
import type { DiffugenStateValue } from "./state.js";

/**
 * What the run's drawing will hold in VRAM (learned for its shape, else estimated), for
 * the scheduler's fit check. Undefined when there is no ledger (VRAM_POLICY=swap) or the
 * request is not resolved yet; the scheduler then swaps.
 */
export function vramNeedOf(deps: DiffugenDeps, drawing: Pick<DiffugenStateValue, "model" | "params">, previews: boolean | undefined): VramNeed | undefined {
  const { params, model } = drawing;
  if (!deps.vram || !params || !model) return undefined;
  try {
    const files = deps.registry.files(deps.registry.resolve(model));
    return deps.vramNeeds.need(model, files, params, deps.backends.choose(params, previews).backend);
  } catch {
    return undefined;
  }
}
