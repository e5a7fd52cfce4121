import type { Context } from "hono";
import { Hono } from "hono";
import { z } from "zod";
import type { JobInput } from "../../jobs/index.js";
import type { ParamNames } from "../errors.js";
import { formatRawEvent } from "../format/raw-events.js";
import { admit } from "../generation-fields.js";
import { flag, parseWith, readJson } from "../http-input.js";
import type { AppEnv, ServerContext } from "../server-context.js";
import { sseResponse } from "../sse.js";

/**
 * The graph's own event stream, for debugging a run end to end:
 *
 *   POST /v1/runs/stream   {mode?, request: {prompt, model?, width?, ...}, refinePrompt?,
 *                           messages?, previousPrompt?, include_previews?}
 *   GET  /v1/events/stream?prompt=...&model=&width=&height=&steps=&seed=&mode=&refine=&previews=
 *
 * Every ProgressEvent goes out as `event: progress` with the event as its JSON data
 * (previews without their PNG unless asked), each finished node as `event: node`, the
 * answer as `event: outcome` when known, and the final state as `event: end` once the run
 * is over (after the LLM reload, unlike the API dialects, which stop at the answer).
 */

const turn = z.object({ role: z.enum(["user", "assistant", "system"]), content: z.string() });

const runBody = z.object({
  mode: z.enum(["image", "chat"]).default("image"),
  request: z.record(z.string(), z.unknown()),
  refinePrompt: flag().optional(),
  messages: z.array(turn).optional(),
  previousPrompt: z.string().optional(),
  include_previews: flag().optional(),
});

const runQuery = z.object({
  prompt: z.string({ error: "prompt is required" }),
  model: z.string().optional(),
  negative_prompt: z.string().optional(),
  width: z.string().optional(),
  height: z.string().optional(),
  steps: z.string().optional(),
  seed: z.string().optional(),
  cfg_scale: z.string().optional(),
  sampling_method: z.string().optional(),
  mode: z.enum(["image", "chat"]).default("image"),
  refine: flag().optional(),
  previews: flag().optional(),
});

/** Parameter names are the generation request's own here. */
const sameNames: ParamNames = {};

export function eventsRoutes(ctx: ServerContext) {
  return new Hono<AppEnv>()
    .post("/runs/stream", async (c) => {
      const body = await readJson(c, runBody);
      const input = admit(
        ctx,
        { mode: body.mode, request: body.request, refinePrompt: body.refinePrompt, messages: body.messages, previousPrompt: body.previousPrompt },
        sameNames,
      );
      return streamRun(c, ctx, input, body.include_previews ?? false);
    })
    .get("/events/stream", (c) => {
      const q = parseWith(runQuery, c.req.query());
      const request = {
        prompt: q.prompt,
        model: q.model,
        negativePrompt: q.negative_prompt,
        width: q.width,
        height: q.height,
        steps: q.steps,
        seed: q.seed,
        cfgScale: q.cfg_scale,
        samplingMethod: q.sampling_method,
      };
      const input = admit(ctx, { mode: q.mode, request, refinePrompt: q.refine }, sameNames);
      return streamRun(c, ctx, input, q.previews ?? false);
    });
}

function streamRun(c: Context<AppEnv>, ctx: ServerContext, input: JobInput, includePreviews: boolean): Response {
  return sseResponse(
    c,
    { heartbeatMs: ctx.options.heartbeatMs, log: ctx.options.log, onError: (err, sink) => sink.send({ error: String(err) }, "error") },
    async (sink) => {
      const job = ctx.runner.start(input, { signal: sink.signal });
      await sink.send({ jobId: job.id, input }, "start");
      for await (const item of job.events) {
        if (item.type === "progress") await sink.send(formatRawEvent(item.event, includePreviews), "progress");
        else if (item.type === "node") await sink.send({ node: item.node, update: item.update }, "node");
        else await sink.send(item.outcome, "outcome");
      }
      const result = await job.finished;
      await sink.send(result, "end");
    },
  );
}
