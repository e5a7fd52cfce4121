import { nodeKit, type NodeRuntime } from "../node-kit.js";
import { seconds, status, warning } from "../progress.js";
import type { DiffugenStateUpdate, DiffugenStateValue } from "../state.js";

/**
 * reload: wait for what giving the GPU back set off, and say it. Usually the scheduler
 * reloads the LLM; when another image job was waiting it got the GPU instead, and the
 * LLM comes back once, after the last of them.
 */
export async function reload(state: DiffugenStateValue, runtime: NodeRuntime): Promise<DiffugenStateUpdate> {
  const kit = nodeKit("reload", state, runtime);
  const outcome = kit.lease.takeOutcome();
  const warnings = [...state.warnings];
  if (outcome) {
    // Beside the LLM (VRAM_POLICY=fit) there is nothing to bring back.
    if (!kit.lease.besideLlm) kit.emit(status("reloading_llm", `Bringing ${kit.deps.config.llm.model} back into VRAM`));
    const result = await outcome;
    switch (result.kind) {
      case "llm_reloaded": {
        const report = result.report;
        // LLM_RESTORE brings back what was resident before the burst: several models, or none.
        const models = report.models ?? [report.model];
        const text = !report.reachable
          ? "Ollama is not reachable: the LLM could not be reloaded"
          : models.length === 0
            ? "VRAM left free (LLM_RESTORE=none)"
            : `${models.join(", ")} back in VRAM in ${seconds(report.durationMs)}`;
        kit.emit(status("reloading_llm", text, 1));
        const note = report.warning ?? (report.reachable ? undefined : text);
        if (note) {
          warnings.push(note);
          kit.emit(warning("reloading_llm", note));
        }
        break;
      }
      case "handed_over":
        kit.emit(status("reloading_llm", "Another image job has the GPU; the LLM comes back after it", 1));
        break;
      case "llm_reload_failed": {
        const note = `The LLM could not be reloaded: ${result.error}`;
        warnings.push(note);
        kit.emit(warning("reloading_llm", note));
        break;
      }
      case "llm_stayed":
        kit.emit(status("reloading_llm", `${kit.deps.config.llm.model} stayed in VRAM beside the image: nothing to reload`, 1));
        break;
      case "none":
        break;
    }
  }
  if (!state.error) {
    const count = state.images.length;
    kit.emit(status("complete", count === 1 ? "Done: 1 image" : `Done: ${count} images`, 1));
  }
  return { warnings, timings: kit.timed() };
}
