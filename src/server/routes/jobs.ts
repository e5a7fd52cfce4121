import { Hono } from "hono";
import { z } from "zod";
import type { JobStatus } from "../../jobs/index.js";
import { ApiError, invalidRequest } from "../errors.js";
import { formatJob, formatJobEvent } from "../format/job-view.js";
import { admit } from "../fields/admit.js";
import { openaiImageParams } from "../fields/openai-fields.js";
import { readJson } from "../http-input.js";
import { linksFor } from "../image-links.js";
import { claimStream } from "../security/stream-slots.js";
import type { AppEnv, ServerContext } from "../server-context.js";
import { sseResponse } from "../sse.js";
import { imageJobInput, openaiImageOptions } from "./openai-images.js";

/**
 * Jobs that outlive their request (the job store, src/jobs):
 *
 *   POST /v1/jobs               start an image job in the background (an OpenAI images
 *                               body); 202 with the job, whose events_url follows it
 *   GET  /v1/jobs               recent jobs, newest first (?limit=20, ?before=<id> pages)
 *   GET  /v1/jobs/:id           status, progress, result links
 *   GET  /v1/jobs/:id/events    its events as SSE: replayed from after Last-Event-ID (or
 *                               ?after=N), then live, ending with `event: end` (the job)
 *   POST /v1/jobs/:id/cancel    cancels it unless its answer is known already (409)
 *
 * Event ids are the job's own sequence numbers; the image streams of /v1/images and
 * /generate carry the same ids, so a client that lost one resumes here without a gap.
 */

const listQuery = z.object({
  limit: z.coerce.number({ error: "limit must be a number" }).int().min(1).max(100).default(20),
  before: z.string().min(1).max(100).optional(),
});

const afterSeq = z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export function jobsRoutes(ctx: ServerContext) {
  const app = new Hono<AppEnv>();
  const { runner } = ctx;

  const jobOr404 = (id: string) => {
    const job = runner.get(id);
    if (!job) throw new ApiError(404, `No job with id '${id}'`, { type: "invalid_request_error", code: "job_not_found", param: "id" });
    return job;
  };

  app.post("/jobs", async (c) => {
    const body = await readJson(c, z.object({ prompt: z.string({ error: "prompt is required and must be a string" }), ...openaiImageOptions }));
    if (body.stream) throw invalidRequest("stream is not available here: follow the job's events_url instead", "stream");
    const input = admit(ctx, imageJobInput(body.prompt, body), openaiImageParams);
    // No client signal: a background job runs until it ends or is cancelled.
    const job = runner.start(input, { events: false });
    const links = linksFor(c, ctx);
    c.header("Location", `${links.base}/v1/jobs/${job.id}`);
    return c.json(formatJob(jobOr404(job.id), links), 202);
  });

  app.get("/jobs", (c) => {
    const parsed = listQuery.safeParse(c.req.query());
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw invalidRequest(issue.message, String(issue.path[0] ?? "limit"));
    }
    const { limit, before } = parsed.data;
    const links = linksFor(c, ctx);
    // One more than asked tells whether there is a next page.
    const page = runner.list({ limit: limit + 1, before });
    const data = page.slice(0, limit).map((job) => formatJob(job, links));
    return c.json({
      object: "list",
      data,
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
      has_more: page.length > limit,
    });
  });

  app.get("/jobs/:id", (c) => c.json(formatJob(jobOr404(c.req.param("id")), linksFor(c, ctx))));

  app.get("/jobs/:id/events", (c) => {
    const id = c.req.param("id");
    jobOr404(id);
    const resumeFrom = c.req.header("Last-Event-ID") ?? c.req.query("after") ?? "0";
    const after = afterSeq.safeParse(resumeFrom.trim());
    if (!after.success) throw invalidRequest("Last-Event-ID (or after) must be an event id from this job's stream", "after");
    const links = linksFor(c, ctx);
    claimStream(c);
    return sseResponse(c, { heartbeatMs: ctx.options.heartbeatMs, log: ctx.options.log }, async (sink) => {
      // Following never cancels: only POST /cancel (or the job's own request) does.
      for await (const stored of runner.follow(id, after.data, sink.signal)) {
        const { event, data } = formatJobEvent(stored, () => runner.get(id), links);
        await sink.send(data, event, stored.seq);
      }
    });
  });

  app.post("/jobs/:id/cancel", async (c) => {
    const id = c.req.param("id");
    const job = jobOr404(id);
    if (!runner.cancel(id)) {
      throw new ApiError(409, `Job '${id}' cannot be cancelled: ${notCancellableReason[job.status]}`, {
        type: "invalid_request_error",
        code: "job_not_cancellable",
      });
    }
    // Cancelling settles the answer quickly (sd-cli is stopped; the GPU goes back meanwhile).
    await runner.whenAnswered(id);
    return c.json(formatJob(jobOr404(id), linksFor(c, ctx)));
  });

  return app;
}

/** Why a job the runner would not cancel is past cancelling, in words (the 409's message). */
const notCancellableReason: Record<JobStatus, string> = {
  running: "it has already been answered",
  succeeded: "it has already succeeded",
  failed: "it has already failed",
  cancelled: "it was already cancelled",
};
