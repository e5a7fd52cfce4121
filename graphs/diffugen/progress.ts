import type { LangGraphRunnableConfig } from "@langchain/langgraph";
import { describeSdEvent, fractionOfPhase, sdStageOf, type SdEvent } from "../../src/diffusion/index.js";
import { progressIn, type Phase, type ProgressEvent, type StepInfo } from "../../src/events/progress-event.js";
import type { GenerationParams } from "../../src/diffusion/index.js";
import type { GpuEvent } from "../../src/gpu/index.js";

/**
 * Turns what the capabilities report (sd-cli output, GPU scheduler events) into the
 * product's one progress event, and writes it to LangGraph's custom stream.
 */

export type EmitProgress = (event: ProgressEvent) => void;

/** The node's writer for the custom stream (absent when the graph is invoked, not streamed). */
export function progressWriter(config: Pick<LangGraphRunnableConfig, "writer">): EmitProgress {
  return (event) => config.writer?.(event);
}

export function status(phase: Phase, message: string, fraction = 0, extra: { step?: StepInfo; queue?: { position: number; ahead: number } } = {}): ProgressEvent {
  return { kind: "status", phase, progress: progressIn(phase, fraction), message, at: Date.now(), ...extra };
}

export function warning(phase: Phase, text: string): ProgressEvent {
  return { kind: "warning", phase, progress: progressIn(phase), message: text, warning: text, at: Date.now() };
}

/** A piece of a reply in words, as the LLM wrote it (in the LLM's phase: nothing is drawn). */
export function replyPiece(text: string): ProgressEvent {
  return { ...status("refining", "Writing the reply", 1), kind: "reply_delta", text };
}

/** The run will draw with these: the one event that tells every dialect the model and parameters. */
export function drawingWith(model: string, params: GenerationParams): ProgressEvent {
  const { initImage: _serverPath, ...shown } = params;
  const message = `Drawing with ${model}: ${params.width}×${params.height}, ${params.steps} steps, seed ${params.seed}`;
  return { ...status("refining", message, 1), kind: "params", model, params: shown };
}

/**
 * sd-cli reports its own progress 0..1 in bands (sd-events.ts); this maps it into ours. A
 * weight load after sampling began (the VAE's) is `loading_model` but stays where the run
 * is: it is placed by its progress, never sent back to the loading band.
 */
function overall(event: SdEvent): number {
  const stage = event.phase === "loading_model" ? sdStageOf(event.progress) : event.phase;
  return progressIn(stage, fractionOfPhase({ phase: stage, progress: event.progress }));
}

/** The product event for one sd-cli event, or undefined when it is not worth showing. */
export function fromSdEvent(event: SdEvent): ProgressEvent | undefined {
  const base = { phase: event.phase, progress: overall(event), at: Date.now() };
  if (event.type === "preview") {
    return {
      ...base,
      kind: "preview",
      message: `Preview at step ${event.step}`,
      pngBase64: event.png.toString("base64"),
      width: event.width,
      height: event.height,
    };
  }
  const message = describeSdEvent(event);
  if (message === undefined) return undefined;
  if (event.type === "step") {
    const step: StepInfo = {
      current: event.step,
      total: event.totalSteps,
      // A step that includes a weight load has no step rate, and no ETA worth showing.
      secondsPerStep: event.includesLoad ? undefined : event.secondsPerStep,
      etaSeconds: event.includesLoad ? undefined : event.etaSeconds,
      image: { index: event.imageIndex + 1, count: event.imageCount },
    };
    return { ...base, kind: "status", message, step };
  }
  return { ...base, kind: "status", message };
}

/**
 * The product event for a GPU scheduler event seen while waiting for or taking the GPU.
 * A job can queue twice (for the LLM, then for diffusion): `progressSoFar` keeps the bar
 * from jumping back while it waits the second time.
 */
export function fromGpuEvent(event: GpuEvent, progressSoFar = 0): ProgressEvent | undefined {
  switch (event.type) {
    case "queued":
      return {
        ...status("queued", event.ahead === 0 ? "Waiting for the GPU" : `Queued, ${event.ahead} ahead`, 0, {
          queue: { position: event.position, ahead: event.ahead },
        }),
        progress: progressSoFar,
      };
    case "fits_beside_llm":
      // VRAM_POLICY=fit: "Fits beside qwen2.5:3b (5.1 of 12 GB): the LLM stays in VRAM".
      return status("unloading_llm", `${capitalised(event.message)}: the LLM stays in VRAM`, 1);
    case "needs_whole_gpu":
      return status("unloading_llm", capitalised(event.message));
    case "unloading_llm":
      return status("unloading_llm", "Moving the LLM out of VRAM");
    case "llm_unloaded":
      // Drawn anyway, for a reason the client should hear (Ollama broke off the unload).
      if (event.warning !== undefined) return warning("unloading_llm", event.warning);
      return status(
        "unloading_llm",
        event.reachable
          ? `LLM out of VRAM (confirmed in ${seconds(event.durationMs)})` +
              (event.freeVramMiB !== undefined ? `, ${event.freeVramMiB} MiB free` : "")
          : "Ollama is not reachable: nothing to unload",
        1,
      );
    case "llm_unload_failed":
      return warning("unloading_llm", `The LLM would not leave VRAM: ${event.error}`);
    case "granted":
    case "reloading_llm":
    case "llm_reloaded":
    case "llm_reload_failed":
      // Reloads are reported by the reload node from the release outcome.
      return undefined;
  }
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function capitalised(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
