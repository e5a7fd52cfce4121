import { outputTagFor, SdOutOfMemoryError } from "../../../src/diffusion/index.js";
import { progressIn } from "../../../src/events/progress-event.js";
import { nodeKit, type NodeKit, type NodeRuntime } from "../node-kit.js";
import { fromGpuEvent, fromSdEvent, warning } from "../progress.js";
import { vramNeedOf } from "../vram-need.js";
import type { DiffugenStateUpdate, DiffugenStateValue, GeneratedImage } from "../state.js";

/**
 * diffuse: run sd.cpp (a fresh sd-cli, or the burst's sd-server: SD_BACKEND) with the
 * refined prompt while holding the GPU, streaming its real progress. The lease is given
 * back on every way out, as soon as sd.cpp is done, so the LLM reload starts while the
 * images are announced; `reload` reports it.
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
    const draw = () =>
      kit.deps.backends.generate(params, files, {
        sd: kit.deps.config.sd,
        model,
        signal: runtime.signal,
        outputTag: outputTagFor(kit.jobId),
        // sd-cli writes previews nearly free; with sd-server only a job whose client shows them runs on sd-cli.
        preview: kit.deps.preview,
        previews: kit.admitted?.previews,
        env: kit.deps.sdEnv,
        // sd-cli has exited with 0: the LLM's reload may start while its output is checked.
        onGpuFree: () => void kit.lease.release(),
        onEvent: (event) => {
          const progress = fromSdEvent(event);
          if (progress) kit.emit(progress);
        },
      });
    let result;
    try {
      result = await draw();
    } catch (err) {
      // VRAM_POLICY=fit guessed wrong: a wrong guess costs time, never an image.
      if (!(err instanceof SdOutOfMemoryError) || !kit.lease.besideLlm) throw err;
      await retryWithWholeGpu(kit, state, runtime);
      result = await draw();
    }
    // sd.cpp is done with the GPU (sd-cli has exited: onGpuFree gave it back already; a kept
    // sd-server is idle, and goes before any reload): the reload starts while the images are announced.
    void kit.lease.release();
    const images: GeneratedImage[] = result.images.map((image) => ({
      path: image.path,
      seed: image.seed,
      width: image.width,
      height: image.height,
      index: image.index,
    }));
    // Each image goes out now, the reload under way beside it: a client never waits for Ollama.
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

/**
 * The drawing ran out of memory beside the LLM: its shape needs more than the ledger
 * thought. Raise what it is known to need (so the next run of this shape swaps first),
 * say so, give the GPU back and take it whole (the LLM moved out), once.
 */
async function retryWithWholeGpu(kit: NodeKit, state: DiffugenStateValue, runtime: NodeRuntime): Promise<void> {
  const need = vramNeedOf(kit.deps, state, kit.admitted?.previews);
  const raised = need ? kit.deps.vramNeeds.raise(need.key, need.mib) : undefined;
  kit.emit(
    warning(
      "unloading_llm",
      `Out of memory beside the LLM${need ? ` (${state.model} at ${state.params?.width}×${state.params?.height} needs more than ${(need.mib / 1024).toFixed(1)} GB` + (raised ? `; now counted as ${(raised / 1024).toFixed(1)} GB` : "") + ")" : ""}: moving the LLM out and drawing again`,
    ),
  );
  await kit.lease.release();
  const lease = await kit.deps.scheduler.acquire("diffusion", {
    jobId: kit.jobId,
    signal: runtime.signal,
    exclusive: true,
    onEvent: (event) => {
      const progress = fromGpuEvent(event, progressIn("unloading_llm"));
      if (progress) kit.emit(progress);
    },
  });
  kit.lease.hold(lease);
  if (!kit.lease.claim()) throw new Error("the GPU lease for the retry was lost");
}
