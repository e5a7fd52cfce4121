import type { JobInput, RawJobInput } from "../../jobs/index.js";
import { rethrowRejection, type ParamNames } from "../errors.js";
import type { ServerContext } from "../server-context.js";

/**
 * Validates and checks a job before anything starts, or throws the dialect's error: the
 * field at fault under the name the client wrote it (`params`, from the dialect's table).
 */
export function admit(ctx: ServerContext, raw: RawJobInput, params: ParamNames): JobInput {
  try {
    return ctx.runner.prepare({ ...raw, request: Object.fromEntries(Object.entries(raw.request).filter(([, v]) => v !== undefined)) });
  } catch (err) {
    rethrowRejection(err, params);
  }
}
