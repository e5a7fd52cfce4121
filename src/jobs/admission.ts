import { parseGenerationRequest, resolveGenerationParams } from "../diffusion/index.js";
import { QueueFullError } from "../gpu/index.js";
import type { DiffugenDeps } from "../../graphs/diffugen/dependencies.js";
import { toRunError } from "../../graphs/diffugen/run-error.js";
import type { RunError } from "../../graphs/diffugen/state.js";
import { JobRejectedError, type JobInput, type RawJobInput } from "./job.js";

/**
 * Admission: everything that can be refused before a run starts, checked in the order a
 * client can fix it (the request, the model, the program that draws, the queue), and the request
 * resolved once, here: the model's defaults filled in and the seed drawn. The run draws
 * with exactly these parameters. A refused request costs no LLM call, no unload and no
 * sd-cli spawn, and its answer goes out before the first byte of a response.
 */
export function admitJob(deps: DiffugenDeps, raw: RawJobInput): JobInput {
  const { registry, scheduler, backends } = deps;
  let input: JobInput;
  try {
    const request = parseGenerationRequest(raw.request);
    const entry = registry.resolve(request.model);
    const params = resolveGenerationParams(request, entry);
    // Chat may end up replying in words: only a drawing needs the weights and sd-cli.
    if (raw.mode === "image") registry.assertFilesPresent(entry);
    input = { ...raw, request, model: entry.name, params };
  } catch (err) {
    throw new JobRejectedError(toRunError(err, "preflight"));
  }
  // The program that will draw it (sd-cli, or sd-server: SD_BACKEND) must be there.
  const missing = raw.mode === "image" ? backends.unavailable(input.params, raw.previews) : undefined;
  if (missing) throw new JobRejectedError(rejection(missing.code, missing.message));
  // The scheduler's own rule (and Retry-After estimate), asked before the job starts.
  const refused = scheduler.admissionRefusal();
  if (refused instanceof QueueFullError) throw new JobRejectedError(rejection("queue_full", refused.message), refused.retryAfterSeconds);
  if (refused) throw new JobRejectedError(rejection("shutting_down", "The server is shutting down"), 5);
  return input;
}

function rejection(code: string, message: string): RunError {
  return { code, message, node: "preflight" };
}
