import { outputTagFor } from "../../../src/diffusion/index.js";
import { progressIn } from "../../../src/events/progress-event.js";
import { nodeKit, type NodeRuntime } from "../node-kit.js";
import { fromSdEvent } from "../progress.js";
import type { DiffugenStateUpdate, DiffugenStateValue, GeneratedImage } from "../state.js";

/**
 * diffuse: run sd.cpp (a fresh sd-cli, or the burst's sd-server: SD_BACKEND) with the
 * refined prompt while holding the GPU, streaming its real progress. The lease is given
 * back on every way out, so the LLM reload starts as soon as the image is saved; `reload`
 * reports it.
 */
export async function diffuse(state: DiffugenStateValue, runtime: NodeRuntime): Promise<DiffugenStateUpdate> {
  const kit = nodeKit("diffuse", state, runtime);
  const { params, model } = state;
  try {
    // From here on this node alone gives the GPU back, once sd.cpp is done with this job.
    if (!kit.lease.claim()) throw new Error("diffuse ran without a GPU lease");
    // refine resolved every parameter, the refined prompt included.
    if (!params || !model) throw new Error("diffuse ran before refine resolved the request");
    // The paths of the weights, checked again: they are the files sd-cli opens now.
    const files = kit.deps.registry.assertFilesPresent(kit.deps.registry.resolve(model));
    const result = await kit.deps.backends.generate(params, files, {
      sd: kit.deps.config.sd,
      model,
      signal: runtime.signal,
      outputTag: outputTagFor(kit.jobId),
      // sd-cli writes previews nearly free; with sd-server only a job whose client shows them runs on sd-cli.
      preview: kit.deps.preview,
      previews: kit.admitted?.previews,
      env: kit.deps.sdEnv,
      onEvent: (event) => {
        const progress = fromSdEvent(event);
        if (progress) kit.emit(progress);
      },
    });
    const images: GeneratedImage[] = result.images.map((image) => ({
      path: image.path,
      seed: image.seed,
      width: image.width,
      height: image.height,
      index: image.index,
    }));
    // Each image goes out now, before the LLM reload: a client never waits for Ollama.
    for (const image of images) {
      kit.emit({
        kind: "image",
        phase: "saving",
        progress: progressIn("saving", 1),
        message: `Image ${image.index + 1}/${images.length} ready (seed ${image.seed})`,
        at: Date.now(),
        ...image,
      });
    }
    return { images, timings: kit.timed() };
  } catch (err) {
    kit.throwIfCancelled();
    return kit.fail(err);
  } finally {
    void kit.lease.release();
  }
}
