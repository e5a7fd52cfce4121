import type { Context } from "hono";
import { Hono } from "hono";
import { z } from "zod";
import { generationRequestSchema } from "../../diffusion/index.js";
import { graphStreamModes, type GraphStreamMode, type JobInput, type RawJobInput } from "../../jobs/index.js";
import { ApiError, invalidRequest } from "../errors.js";
import { admit } from "../fields/admit.js";
import { graphRunStream } from "../format/graph-stream.js";
import { flag, parseWith, readJson } from "../http-input.js";
import { startRequestJob } from "../request-job.js";
import type { AppEnv, ServerContext } from "../server-context.js";
import { streamJob } from "../sse.js";

/**
 * The graph's own stream, for debuggers and custom UIs:
 *
 *   POST /v1/graph/stream
 *   {mode?, request: {prompt, model?, width?, steps?, ...}, refinePrompt?, messages?,
 *    previousPrompt?, stream_mode? | streamMode?}
 *
 * The body is the graph's state input (graphs/diffugen/state.ts), plus the LangGraph stream
 * modes wanted: any of `updates`, `custom`, `values` (a string or a list; default
 * ["updates","custom"]). Each chunk LangGraph yields goes out untouched as
 * `event: <mode>` with the chunk as JSON data: `updates` are `{node: update}`, `custom`
 * the ProgressEvents (previews with their PNG), `values` the whole state after each step.
 * `event: end` with `{jobId, outcome}` closes the stream once the run is over (after the
 * LLM reload, unlike the API dialects, which stop at the answer); an unexpected failure
 * sends `event: error` first. The run goes through the job runner like every other
 * request: validated and admitted before the first byte (400/404/429/503 as JSON),
 * queued on the one GPU scheduler, cancelled when the client hangs up.
 *
 * Aliases, for the same code: `POST /v1/runs/stream` (the same body) and
 * `GET /v1/events/stream?prompt=...&steps=...&stream_mode=updates,custom` (the request's
 * fields and the other inputs as query parameters, for EventSource, which can only GET).
 */

const turn = z.strictObject({ role: z.enum(["user", "assistant", "system"]), content: z.string() });

/** The graph's input, as DiffugenState takes it; `request` is checked by the generation schema on admission. */
const graphInput = {
  mode: z.enum(["image", "chat"]).default("image"),
  // An init image is a path on this machine: only uploads (/v1/images/edits) may set it,
  // or anyone with the key could have sd-cli read any image file on the host.
  request: z
    .record(z.string(), z.unknown(), { error: "request must be an object with a prompt" })
    .refine((r) => !("initImage" in r), { error: "initImage is not accepted here: upload the image to /v1/images/edits", path: ["initImage"] }),
  refinePrompt: flag().optional(),
  messages: z.array(turn).optional(),
  previousPrompt: z.string().optional(),
};

const modeName = z.enum(graphStreamModes, { error: `stream modes are ${graphStreamModes.join(", ")}` });
/** One mode or a list of them (LangGraph takes both). */
const modes = z.preprocess((v) => (typeof v === "string" ? [v] : v), z.array(modeName).min(1, { error: "name at least one stream mode" }));

const graphStreamBody = z.strictObject({ ...graphInput, stream_mode: modes.optional(), streamMode: modes.optional() });

/**
 * GET: every value is a string; `request` fields sit at the top level next to the other
 * inputs. Never `initImage`: a server-side path from a client would let it make sd-cli
 * read any file on the host (uploads go through /v1/images/edits).
 */
const requestFields = Object.keys(generationRequestSchema.shape).filter((field) => field !== "initImage");
const queryInputs = z.strictObject({
  mode: graphInput.mode,
  refinePrompt: graphInput.refinePrompt,
  previousPrompt: graphInput.previousPrompt,
  stream_mode: z.string().optional(),
  streamMode: z.string().optional(),
  ...Object.fromEntries(requestFields.map((field) => [field, z.string().optional()])),
});

export const defaultGraphStreamModes: readonly GraphStreamMode[] = ["updates", "custom"];

export function graphStreamRoutes(ctx: ServerContext) {
  const post = async (c: Context<AppEnv>) => {
    const body = await readJson(c, graphStreamBody);
    const streamModes = chosenModes(body.stream_mode, body.streamMode);
    const { stream_mode: _, streamMode: __, ...input } = body;
    return streamGraph(c, ctx, admitGraphInput(ctx, input), streamModes);
  };
  return new Hono<AppEnv>()
    .post("/graph/stream", post)
    .post("/runs/stream", post)
    .get("/events/stream", (c) => {
      const query = parseWith(queryInputs, c.req.query());
      const { mode, refinePrompt, previousPrompt, stream_mode, streamMode, ...request } = query;
      const streamModes = chosenModes(modesInQuery(stream_mode, "stream_mode"), modesInQuery(streamMode, "streamMode"));
      return streamGraph(c, ctx, admitGraphInput(ctx, { mode, refinePrompt, previousPrompt, request }), streamModes);
    });
}

/** Validates and admits the input; errors inside `request` name the field where the client wrote it (`request.width`). */
function admitGraphInput(ctx: ServerContext, input: RawJobInput): JobInput {
  try {
    return admit(ctx, input, {});
  } catch (err) {
    const param = err instanceof ApiError ? err.details.param : undefined;
    if (err instanceof ApiError && param && param !== "request" && !param.startsWith("request.")) {
      throw new ApiError(err.status, err.message, { ...err.details, param: `request.${param}` });
    }
    throw err;
  }
}

/** `updates,custom` → the modes, or a 400 naming the unknown one. */
function modesInQuery(value: string | undefined, param: string): GraphStreamMode[] | undefined {
  if (value === undefined) return undefined;
  const names = value.split(",").map((m) => m.trim()).filter((m) => m !== "");
  if (names.length === 0) throw invalidRequest("name at least one stream mode", param);
  const unknown = names.find((m) => !(graphStreamModes as readonly string[]).includes(m));
  if (unknown !== undefined) throw invalidRequest(`unknown stream mode '${unknown}': stream modes are ${graphStreamModes.join(", ")}`, param);
  return names as GraphStreamMode[];
}

function chosenModes(snake: GraphStreamMode[] | undefined, camel: GraphStreamMode[] | undefined): GraphStreamMode[] {
  if (snake !== undefined && camel !== undefined) throw invalidRequest("Give stream_mode or streamMode, not both", "stream_mode");
  return [...new Set(snake ?? camel ?? defaultGraphStreamModes)];
}

function streamGraph(c: Context<AppEnv>, ctx: ServerContext, input: JobInput, streamModes: GraphStreamMode[]): Response {
  const started = startRequestJob(c, ctx, input, { streamModes });
  return streamJob(c, started, graphRunStream(started.job.id), ctx.options);
}
