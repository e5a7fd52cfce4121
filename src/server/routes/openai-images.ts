import type { Context } from "hono";
import { Hono } from "hono";
import { z } from "zod";
import type { JobInput, RawJobInput } from "../../jobs/index.js";
import type { ParamNames } from "../errors.js";
import { admit } from "../fields/admit.js";
import { requestOf, shapeOf, type FieldTable, type RequestPart } from "../fields/field-table.js";
import { openaiImageFields, openaiImageParams } from "../fields/openai-fields.js";
import { openaiImageStream } from "../format/openai-image-stream.js";
import { openaiImagesBody, type ImageEventPrefix } from "../format/openai-images.js";
import { imagesOrThrow } from "../format/outcomes.js";
import { parseSize, readJson } from "../http-input.js";
import { linksFor } from "../image-links.js";
import { imageDataOf, startRequestJob, type RequestJob } from "../request-job.js";
import type { AppEnv, ServerContext } from "../server-context.js";
import { streamJob } from "../sse.js";

/**
 * POST /v1/images/generations: OpenAI's image API, as OpenWebUI's image button and the
 * official SDKs call it (REFERENCE.md §3-4), plus the diffusion extras.
 */

/** The body's fields after `prompt` (the routes that take an OpenAI images body spread them). */
export const openaiImageOptions = shapeOf(openaiImageFields);

const generationBody = z.object({
  prompt: z.string({ error: "prompt is required and must be a string" }),
  ...openaiImageOptions,
});

export type OpenAIImageOptions = z.output<z.ZodObject<typeof openaiImageOptions>>;

export function openaiImagesRoutes(ctx: ServerContext) {
  return new Hono<AppEnv>().post("/images/generations", async (c) => {
    const body = await readJson(c, generationBody);
    const input = admit(ctx, imageJobInput(body.prompt, body), openaiImageParams);
    return answerImageJob(c, ctx, input, body, { prefix: "image_generation", params: openaiImageParams });
  });
}

/**
 * The job an OpenAI-style image request asks for: its fields mapped by their table
 * (`fields`, default the images table), `more` filled by the route itself.
 */
export function imageJobInput(prompt: string, body: OpenAIImageOptions, more: RequestPart = {}, fields: FieldTable = openaiImageFields): RawJobInput {
  return {
    mode: "image",
    refinePrompt: body.refine ?? true,
    // Previews are only sent on a stream; sd-cli is the program that writes them.
    previews: body.stream === true && (body.partial_images ?? 0) > 0,
    request: { prompt, ...requestOf(fields, body), ...more },
  };
}

export interface ImageJobOptions {
  prefix: ImageEventPrefix;
  /** The route's names for request fields (from its table), for errors. */
  params: ParamNames;
  /**
   * Called once when the job's inputs are no longer needed: after the run is over (the edit
   * route deletes its upload then), or at once if no run started.
   */
  release?: () => Promise<void>;
}

/** Runs an admitted image job and answers as OpenAI does: one JSON body, or an event stream. */
export async function answerImageJob(
  c: Context<AppEnv>,
  ctx: ServerContext,
  input: JobInput,
  body: OpenAIImageOptions,
  options: ImageJobOptions,
): Promise<Response> {
  const links = linksFor(c, ctx);
  const quality = body.quality ?? "auto";
  if (!body.stream) {
    const { job } = startReleasing(c, ctx, input, { events: false }, options.release);
    const outcome = imagesOrThrow(await job.outcome, options.params);
    const images = body.response_format === "url" ? [] : await imageDataOf(outcome);
    return c.json(openaiImagesBody(outcome, { responseFormat: body.response_format, quality, links, images, now: Date.now() }));
  }

  const started = startReleasing(c, ctx, input, {}, options.release);
  const requested = parseSize(body.size);
  const formatter = openaiImageStream({
    prefix: options.prefix,
    partialImages: body.partial_images ?? 0,
    size: requested.width ? `${requested.width}x${requested.height}` : "auto",
    quality,
    links,
    params: options.params,
  });
  return streamJob(c, started, formatter, ctx.options);
}

/** Starts the job; the edit route's upload is released once the run is over (or at once if it never starts). */
function startReleasing(
  c: Context<AppEnv>,
  ctx: ServerContext,
  input: JobInput,
  options: { events?: boolean },
  release: (() => Promise<void>) | undefined,
): RequestJob {
  let started: RequestJob;
  try {
    started = startRequestJob(c, ctx, input, options);
  } catch (err) {
    void release?.();
    throw err;
  }
  if (release) void started.job.finished.finally(release);
  return started;
}
