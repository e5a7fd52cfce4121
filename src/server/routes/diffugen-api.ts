import { Hono } from "hono";
import { z } from "zod";
import type { JobInput } from "../../jobs/index.js";
import { invalidRequest } from "../errors.js";
import { admit } from "../fields/admit.js";
import { requestOf } from "../fields/field-table.js";
import { openaiImageParams } from "../fields/openai-fields.js";
import { seedBody, seedFields, seedParams, type SeedBody } from "../fields/seed-fields.js";
import { formatSeedResult } from "../format/diffugen-api.js";
import { openaiImagesResult } from "../format/openai-images.js";
import { imagesOrThrow } from "../format/outcomes.js";
import { seedStream } from "../format/seed-stream.js";
import { readJson } from "../http-input.js";
import { linksFor } from "../image-links.js";
import { startRequestJob } from "../request-job.js";
import type { AppEnv, ServerContext } from "../server-context.js";
import { streamJob } from "../sse.js";
import { imageJobInput, openaiImageOptions } from "./openai-images.js";

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
 * OpenAI routes). /v1/images/generations/stream is an OpenAI route: its failures are
 * OpenAI's `{"error": {...}}`, before the stream and in its `event: error`. Unlike the original, progress is sd.cpp's own, a busy GPU queues the
 * request instead of refusing it, and the prompt is refined first (`refine: false` to skip).
 */

type Family = "any" | "stable" | "flux";

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
      const outcome = imagesOrThrow(await job.outcome, seedParams);
      return c.json(formatSeedResult(outcome, linksFor(c, ctx), input.request.prompt));
    });
    app.post(`${route}/stream`, async (c) => {
      const input = seedJob(ctx, await readJson(c, seedBody), family);
      const links = linksFor(c, ctx);
      const started = startRequestJob(c, ctx, input);
      const formatter = seedStream({ result: (outcome) => formatSeedResult(outcome, links, input.request.prompt), needsImageData: false, params: seedParams });
      return streamJob(c, started, formatter, ctx.options);
    });
  }
  app.post("/v1/images/generations/stream", async (c) => {
    const body = await readJson(c, z.object({ prompt: z.string({ error: "prompt is required" }), ...openaiImageOptions }));
    const input = admit(ctx, imageJobInput(body.prompt, body), openaiImageParams);
    const links = linksFor(c, ctx);
    const responseFormat = body.response_format;
    const started = startRequestJob(c, ctx, input);
    const formatter = seedStream({
      result: (outcome, images) => openaiImagesResult(outcome, { responseFormat, links, images, now: Date.now() }),
      needsImageData: responseFormat !== "url",
      params: openaiImageParams,
      // Under /v1 and OpenAI-compatible: its errors are OpenAI's, before the stream (errors.ts
      // dialectOf) and inside it.
      errors: "openai",
    });
    return streamJob(c, started, formatter, ctx.options);
  });
  return app;
}

/** The job a seed API body asks for, its fields mapped by their table; the family route picks the model. */
function seedJob(ctx: ServerContext, body: SeedBody, family: Family): JobInput {
  return admit(
    ctx,
    {
      mode: "image",
      refinePrompt: body.refine ?? true,
      request: { ...requestOf(seedFields, body), model: modelFor(ctx, family, body.model) },
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
