import type { SdEvent } from "./sd-events.js";

/**
 * A short human line for an event ("Sampling step 3/20 · 1.2 s/step · ~25 s left"), the
 * `message` of the product's progress event. Undefined for events not worth a status
 * line (logs, model info), so a status display only changes when something happened.
 */
export function describeSdEvent(event: SdEvent): string | undefined {
  switch (event.type) {
    case "spawned":
    case "phase":
      return phaseMessages[event.phase];
    case "server_reused":
      return `The image model is already loaded (sd-server, pid ${event.pid})`;
    case "load_progress":
      return `Loading model weights ${event.current}/${event.total}`;
    case "sampling_started":
      // The first image's weights load lazily after this line: it is still loading.
      if (event.phase === "loading_model") {
        return event.imageCount > 1
          ? `Loading the diffusion model for image ${event.imageIndex + 1}/${event.imageCount} (seed ${event.seed})`
          : `Loading the diffusion model (seed ${event.seed})`;
      }
      return event.imageCount > 1
        ? `Sampling image ${event.imageIndex + 1}/${event.imageCount} (seed ${event.seed})`
        : `Sampling (seed ${event.seed})`;
    case "step": {
      const image = event.imageCount > 1 ? `image ${event.imageIndex + 1}/${event.imageCount}, ` : "";
      return (
        `Sampling ${image}step ${event.step}/${event.totalSteps}` +
        (event.includesLoad ? "" : ` · ${formatSeconds(event.secondsPerStep)}/step · ~${formatSeconds(event.etaSeconds)} left`)
      );
    }
    case "sampling_completed":
      return `Sampled image ${event.imageIndex + 1} in ${formatSeconds(event.seconds)}`;
    case "decoding_started":
      return event.latents > 1 ? `Decoding ${event.latents} images` : "Decoding the image";
    case "decode_progress":
      return event.unit === "tile"
        ? `Decoding tile ${event.current}/${event.total}`
        : `Decoded ${event.current}/${event.total}`;
    case "image_saved":
      return event.success ? `Saved image ${event.imageIndex + 1}` : `Could not save image ${event.imageIndex + 1}`;
    case "images_saved":
      return `Saved ${event.saved}/${event.total} images`;
    case "preview":
    case "log":
    case "model_version":
    case "image_size":
      return undefined;
  }
}

const phaseMessages = {
  loading_model: "Loading the image model",
  sampling: "Sampling",
  decoding: "Decoding",
  saving: "Saving",
} as const;

function formatSeconds(seconds: number): string {
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 120) return `${Math.round(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}
