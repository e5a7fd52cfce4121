import { parseGenerationRequest, resolveGenerationParams } from "../diffusion/index.js";
import type { GpuScheduler } from "../gpu/index.js";
import type { DiffugenDeps } from "../../graphs/diffugen/dependencies.js";
import { toRunError } from "../../graphs/diffugen/run-error.js";
import type { RunError } from "../../graphs/diffugen/state.js";
import { locateExecutable } from "./executable.js";
import { JobRejectedError, type JobInput, type RawJobInput } from "./job.js";

/**
 * Everything that can be refused before a run starts, checked in the order a client can fix
 * it: the request, the model, the backend, the queue. A refused request costs no LLM call,
 * no unload and no sd-cli spawn. The graph checks the request again (it is the authority);
 * this only moves the answer before the first byte of the response.
 */
export function preflight(deps: DiffugenDeps, raw: RawJobInput): JobInput {
  const { registry, scheduler, config } = deps;
  let input: JobInput;
  try {
    const request = parseGenerationRequest(raw.request);
    const entry = registry.resolve(request.model);
    // A fixed seed source: only the checks matter here, not the seed.
    resolveGenerationParams(request, entry, { randomSeed: () => 0 });
    // Chat may end up replying in words: only a drawing needs the weights and sd-cli.
    if (raw.mode === "image") registry.assertFilesPresent(entry);
    input = { ...raw, request };
  } catch (err) {
    throw new JobRejectedError(toRunError(err, "preflight"));
  }
  if (raw.mode === "image" && locateExecutable(config.sd.bin) === undefined) {
    throw new JobRejectedError(
      rejection("sd_not_found", `sd-cli not found: SD_CPP_BIN=${config.sd.bin} is not an executable file (nor on PATH)`),
    );
  }
  const state = scheduler.state();
  if (state.closing) throw new JobRejectedError(rejection("shutting_down", "The server is shutting down"), 5);
  if (state.queue.length >= config.gpu.maxQueue) {
    const retryAfter = estimateRetryAfterSeconds(scheduler);
    throw new JobRejectedError(
      rejection(
        "queue_full",
        `The GPU queue is full (${state.queue.length} of ${config.gpu.maxQueue} waiting); retry in about ${retryAfter} s`,
      ),
      retryAfter,
    );
  }
  return input;
}

function rejection(code: string, message: string): RunError {
  return { code, message, node: "preflight" };
}

/** Assumed length of one image job until one has been measured. */
const DEFAULT_JOB_MS = 60_000;

/**
 * About how long until the queue has room: one image job for the holder and each waiter,
 * at the measured mean hold time.
 */
export function estimateRetryAfterSeconds(scheduler: GpuScheduler): number {
  const stats = scheduler.stats();
  const perJobMs = stats.holds.diffusion.count > 0 ? stats.holds.diffusion.meanMs : DEFAULT_JOB_MS;
  const jobs = stats.queue.length + (stats.gpu.kind === "idle" ? 0 : 1);
  return Math.min(3600, Math.max(1, Math.ceil((Math.max(1, jobs) * perJobMs) / 1000)));
}
