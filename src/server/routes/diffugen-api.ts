import type { Context } from "hono";
import { Hono } from "hono";
import { z } from "zod";
import type { JobInput, JobOutcome } from "../../jobs/index.js";
import { apiErrorFromRun, invalidRequest, type ParamNames } from "../errors.js";
import { formatSeedProgress, formatSeedResult, type SeedResult } from "../format/diffugen-api.js";
import { zeroImageUsage } from "../format/openai-images.js";
import { admit, openaiImageParams } from "../generation-fields.js";
import { flag, numeric, readJson } from "../http-input.js";
import { imageUrl, publicBaseUrl, readBase64 } from "../image-links.js";
import { startRequestJob } from "../request-job.js";
import type { AppEnv, ServerContext } from "../server-context.js";
import { sseResponse } from "../sse.js";
import { imageJobInput, openaiImageOptions, outcomeError, unixNow } from "./openai-images.js";

/**
 * The original DiffuGen API (REFERENCE.md §5), so its clients keep working:
 *
 *   POST /generate          any model (the default when none is named)
 *   POST /generate/stable   Stable Diffusion models (sd15, sdxl, sd3)
 *   POST /generate/flux     Flux models (flux-schnell, flux-dev)
 *   POST <each>/stream      the same as server-sent events: `event: progress` with
 *                           {phase, progress, message, step, total_steps, eta_seconds,
 *                           timestamp}, then `event: done` (with the result) or `event: error`
 *   POST /v1/images/generations/stream   an OpenAI images body, answered with these events
 *
 * Answers are `{success, error, image_path, image_url, markdown_response, model, prompt,
 * parameters}`; failures keep `{success: false, error}` (with the HTTP status of the
 * OpenAI routes). Unlike the original, progress is sd.cpp's own, a busy GPU queues the
 * request instead of refusing it, and the prompt is refined first (`refine: false` to skip).
 */

/** Pydantic clients send `null` for unset optional fields. */
const nullish = <T extends z.ZodType>(schema: T) => schema.nullish().transform((v) => v ?? undefined);

const seedBody = z.object({
  prompt: z.string({ error: "prompt is required" }).min(1, { error: "prompt must not be empty" }),
  model: nullish(z.string()),
  width: nullish(numeric(z.number().int().min(64).max(2048))),
  height: nullish(numeric(z.number().int().min(64).max(2048))),
  steps: nullish(numeric(z.number().int().min(1).max(150))),
  cfg_scale: nullish(numeric(z.number().min(1).max(20))),
  seed: nullish(numeric(z.number().int().min(-1))),
  sampling_method: nullish(z.string()),
  scheduler: nullish(z.string()),
  negative_prompt: nullish(z.string()),
  refine: nullish(flag()),
});
type SeedBody = z.output<typeof seedBody>;

type Family = "any" | "stable" | "flux";

const seedParams: ParamNames = {
  negativePrompt: "negative_prompt",
  cfgScale: "cfg_scale",
  samplingMethod: "sampling_method",
};

export function diffugenApiRoutes(ctx: ServerContext) {
  const app = new Hono<AppEnv>();
  for (const [route, family] of [
    ["/generate", "any"],
    ["/generate/stable", "stable"],
    ["/generate/flux", "flux"],
  ] as const) {
    app.post(route, async (c) => {
      const input = seedJob(ctx, await readJson(c, seedBody), family);
      const { job } = startRequestJob(c, ctx, input, { events: false });
      const outcome = await job.outcome;
      if (outcome.kind !== "images") throw outcomeError(outcome, seedParams);
      return c.json(await seedResult(outcome, publicBaseUrl(c, ctx.options.publicBaseUrl), input.request.prompt));
    });
    app.post(`${route}/stream`, async (c) => {
      const input = seedJob(ctx, await readJson(c, seedBody), family);
      const base = publicBaseUrl(c, ctx.options.publicBaseUrl);
      return streamSeedEvents(c, ctx, input, (outcome) => seedResult(outcome, base, input.request.prompt));
    });
  }
  app.post("/v1/images/generations/stream", async (c) => {
    const body = await readJson(c, z.object({ prompt: z.string({ error: "prompt is required" }), ...openaiImageOptions }));
    const input = admit(ctx, imageJobInput(body.prompt, body), openaiImageParams);
    const base = publicBaseUrl(c, ctx.options.publicBaseUrl);
    return streamSeedEvents(c, ctx, input, async (outcome) => ({
      created: unixNow(),
      data: await Promise.all(
        outcome.images.map(async (image) => ({
          ...(body.response_format === "url" ? { url: imageUrl(base, image.path) } : { b64_json: await readBase64(image.path) }),
          revised_prompt: outcome.refined?.prompt ?? outcome.params.prompt,
          seed: image.seed,
        })),
      ),
      output_format: "png",
      size: `${outcome.params.width}x${outcome.params.height}`,
      usage: zeroImageUsage,
    }));
  });
  return app;
}

function seedJob(ctx: ServerContext, body: SeedBody, family: Family): JobInput {
  return admit(
    ctx,
    {
      mode: "image",
      refinePrompt: body.refine ?? true,
      request: {
        prompt: body.prompt,
        model: modelFor(ctx, family, body.model),
        negativePrompt: body.negative_prompt,
        width: body.width,
        height: body.height,
        steps: body.steps,
        cfgScale: body.cfg_scale,
        seed: body.seed,
        samplingMethod: body.sampling_method,
        scheduler: body.scheduler,
      },
    },
    seedParams,
  );
}

/** The model a family route draws with; a model of the other family is refused. */
function modelFor(ctx: ServerContext, family: Family, requested: string | undefined): string | undefined {
  const { registry } = ctx.deps;
  const isFlux = (name: string | undefined) => registry.find(name ?? "")?.family === "flux";
  if (requested === undefined || requested.trim() === "") {
    if (family === "any") return undefined;
    const fallback = family === "flux" ? "flux-schnell" : "sd15";
    const configured = registry.resolve().name;
    return isFlux(configured) === (family === "flux") ? configured : fallback;
  }
  const entry = registry.find(requested);
  if (entry && family !== "any" && (entry.family === "flux") !== (family === "flux")) {
    const other = family === "flux" ? "/generate/stable" : "/generate/flux";
    throw invalidRequest(`'${requested}' is not a ${family === "flux" ? "Flux" : "Stable Diffusion"} model: use ${other}`, "model");
  }
  return requested;
}

async function seedResult(outcome: Extract<JobOutcome, { kind: "images" }>, base: string, originalPrompt: string): Promise<SeedResult> {
  return formatSeedResult({
    images: outcome.images.map((image) => ({ path: image.path, url: imageUrl(base, image.path), seed: image.seed })),
    model: outcome.model,
    prompt: outcome.refined?.prompt ?? outcome.params.prompt,
    originalPrompt,
    params: outcome.params,
    warnings: outcome.warnings,
  });
}

/** Progress as the seed API's events; the result (or the error) ends the stream. */
function streamSeedEvents(
  c: Context<AppEnv>,
  ctx: ServerContext,
  input: JobInput,
  result: (outcome: Extract<JobOutcome, { kind: "images" }>) => Promise<object>,
): Response {
  const { job, bindStream } = startRequestJob(c, ctx, input);
  return sseResponse(
    c,
    {
      heartbeatMs: ctx.options.heartbeatMs,
      log: ctx.options.log,
      onError: (err, sink) => sink.send({ error: err instanceof Error ? err.message : String(err), phase: "error" }, "error"),
    },
    async (sink) => {
      bindStream(sink);
      let progress = 0;
      let endSeq: number | undefined;
      let last = "";
      for await (const item of job.events) {
        if (item.type === "outcome") {
          endSeq = item.seq;
          break;
        }
        if (item.type !== "progress" || item.event.kind === "error") continue;
        const event = formatSeedProgress(item.event);
        if (!event) continue;
        // Their clients draw a bar: never backwards, and no repeats.
        progress = Math.max(progress, event.progress);
        const key = `${event.phase}|${progress}|${event.message}`;
        if (key === last) continue;
        last = key;
        await sink.send({ ...event, progress }, "progress", item.seq);
      }
      const outcome = await job.outcome;
      if (outcome.kind !== "images") {
        const err = outcome.kind === "failed" ? apiErrorFromRun(outcome.error, { params: seedParams }) : outcomeError(outcome, seedParams);
        await sink.send({ error: err.message, phase: "error", code: err.details.code ?? null, timestamp: new Date().toISOString() }, "error", endSeq);
        return;
      }
      const answer = await result(outcome);
      const count = outcome.images.length;
      await sink.send(
        {
          phase: "complete",
          progress: 100,
          message: count === 1 ? "Image ready" : `${count} images ready`,
          step: outcome.params.steps,
          total_steps: outcome.params.steps,
          eta_seconds: 0,
          timestamp: new Date().toISOString(),
        },
        "progress",
        endSeq,
      );
      await sink.send({ done: true, ...answer }, "done", endSeq);
    },
  );
}
