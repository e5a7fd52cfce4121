import type { Context } from "hono";
import { Hono } from "hono";
import { z } from "zod";
import { maxBatchCount } from "../../diffusion/index.js";
import type { JobInput, JobOutcome } from "../../jobs/index.js";
import { apiErrorFromRun, ApiError, invalidRequest } from "../errors.js";
import {
  formatCompletedImage,
  formatImageProgress,
  formatPartialImage,
  formatStreamError,
  PartialImagePicker,
  zeroImageUsage,
  type ImageEventPrefix,
  type ImageMeta,
} from "../format/openai-images.js";
import { admit, extrasToRequest, generationExtras, imageModelOf, openaiImageParams } from "../generation-fields.js";
import { flag, numeric, parseSize, readJson, sizeSchema } from "../http-input.js";
import { imageUrl, publicBaseUrl, readBase64 } from "../image-links.js";
import { startRequestJob, type RequestJob } from "../request-job.js";
import type { AppEnv, ServerContext } from "../server-context.js";
import { sseResponse } from "../sse.js";

/**
 * POST /v1/images/generations: OpenAI's image API, as OpenWebUI's image button and the
 * official SDKs call it (REFERENCE.md §3-4), plus the diffusion extras.
 */

export const openaiImageOptions = {
  model: z.string().optional(),
  n: numeric(z.number().int().min(1).max(10)).optional(),
  size: sizeSchema.optional(),
  quality: z.string().optional(),
  response_format: z.enum(["url", "b64_json"]).optional(),
  output_format: z.enum(["png"], { error: "only 'png' is supported" }).optional(),
  background: z.enum(["auto", "opaque"], { error: "transparent backgrounds are not supported" }).optional(),
  stream: flag().optional(),
  partial_images: numeric(z.number().int().min(0).max(3)).optional(),
  ...generationExtras,
};

const generationBody = z.object({
  prompt: z.string({ error: "prompt is required and must be a string" }),
  ...openaiImageOptions,
});

export type OpenAIImageOptions = z.output<z.ZodObject<typeof openaiImageOptions>>;

export function openaiImagesRoutes(ctx: ServerContext) {
  return new Hono<AppEnv>().post("/images/generations", async (c) => {
    const body = await readJson(c, generationBody);
    const input = admit(ctx, imageJobInput(body.prompt, body), openaiImageParams);
    return answerImageJob(c, ctx, input, body, { prefix: "image_generation" });
  });
}

/** The job an OpenAI-style image request asks for. */
export function imageJobInput(prompt: string, body: OpenAIImageOptions, more: Record<string, unknown> = {}) {
  if (body.n !== undefined && body.n > maxBatchCount) {
    throw invalidRequest(`n must be between 1 and ${maxBatchCount} on this server (got ${body.n})`, "n");
  }
  return {
    mode: "image" as const,
    refinePrompt: body.refine ?? true,
    request: {
      prompt,
      model: imageModelOf(body.model),
      ...parseSize(body.size),
      batchCount: body.n,
      ...extrasToRequest(body),
      ...more,
    },
  };
}

export interface ImageJobOptions {
  prefix: ImageEventPrefix;
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
  const base = publicBaseUrl(c, ctx.options.publicBaseUrl);
  const quality = body.quality ?? "auto";
  if (!body.stream) {
    const { job } = startReleasing(c, ctx, input, { events: false }, options.release);
    const outcome = imagesOrThrow(await job.outcome);
    const first = outcome.images[0]!;
    const data = await Promise.all(
      outcome.images.map(async (image) => ({
        ...(body.response_format === "url" ? { url: imageUrl(base, image.path) } : { b64_json: await readBase64(image.path) }),
        revised_prompt: outcome.refined?.prompt ?? outcome.params.prompt,
        seed: image.seed,
      })),
    );
    return c.json({
      created: unixNow(),
      data,
      background: "opaque",
      output_format: "png",
      quality,
      size: `${first.width}x${first.height}`,
      usage: zeroImageUsage,
    });
  }

  const { job, bindStream } = startReleasing(c, ctx, input, {}, options.release);
  const picker = new PartialImagePicker(body.partial_images ?? 0);
  const requested = parseSize(body.size);
  let meta: ImageMeta = {
    size: requested.width ? `${requested.width}x${requested.height}` : "auto",
    quality,
    background: "opaque",
    outputFormat: "png",
  };
  return sseResponse(
    c,
    {
      heartbeatMs: ctx.options.heartbeatMs,
      log: ctx.options.log,
      onError: (err, sink) => sink.send(formatStreamError(err instanceof Error ? err.message : String(err), "internal"), "error"),
    },
    async (sink) => {
      bindStream(sink);
      let endSeq: number | undefined;
      for await (const item of job.events) {
        if (item.type === "node" && item.node === "refine" && item.state.params) {
          meta = { ...meta, size: `${item.state.params.width}x${item.state.params.height}` };
        } else if (item.type === "progress") {
          const event = item.event;
          if (picker.take(event) && event.kind === "preview") {
            await sink.send(formatPartialImage(options.prefix, event.pngBase64, picker.sent - 1, meta, unixNow()), `${options.prefix}.partial_image`, item.seq);
          } else {
            const progress = formatImageProgress(event);
            if (progress) await sink.send(progress, progress.type, item.seq);
          }
        } else if (item.type === "outcome") {
          endSeq = item.seq;
          break;
        }
      }
      const outcome = await job.outcome;
      if (outcome.kind !== "images") {
        const err = outcomeError(outcome);
        await sink.send(formatStreamError(err.message, err.details.code ?? null, err.details.type), "error", endSeq);
        return;
      }
      for (const image of outcome.images) {
        const completed = formatCompletedImage(options.prefix, await readBase64(image.path), { ...meta, size: `${image.width}x${image.height}` }, unixNow(), {
          revisedPrompt: outcome.refined?.prompt,
          url: imageUrl(base, image.path),
          seed: image.seed,
          index: image.index,
        });
        await sink.send(completed, completed.type, endSeq);
      }
    },
  );
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

/** The images of a finished job, or the API error for what happened instead. */
export function imagesOrThrow(outcome: JobOutcome): Extract<JobOutcome, { kind: "images" }> {
  if (outcome.kind === "images") return outcome;
  throw outcomeError(outcome);
}

export function outcomeError(outcome: Exclude<JobOutcome, { kind: "images" }>, params = openaiImageParams): ApiError {
  switch (outcome.kind) {
    case "failed":
      return apiErrorFromRun(outcome.error, { params });
    case "cancelled":
      return apiErrorFromRun({ code: "cancelled", message: `Cancelled: ${outcome.reason}`, node: "runner" });
    case "reply":
      return apiErrorFromRun({ code: "internal", message: "The run answered in words instead of drawing", node: "runner" });
  }
}

export function unixNow(): number {
  return Math.floor(Date.now() / 1000);
}
