import { Hono } from "hono";
import { z } from "zod";
import type { ActivityHub } from "../activity/activity-hub.js";
import { invalidRequest } from "../errors.js";
import { formatActivity } from "../format/activity-view.js";
import { linksFor } from "../image-links.js";
import { claimStream } from "../security/stream-slots.js";
import type { AppEnv, ServerContext } from "../server-context.js";
import { sseResponse } from "../sse.js";

/**
 * GET /v1/events: everything the operator page shows, as one SSE stream (activity/
 * activity-hub.ts): who holds the GPU (`gpu.holder`), the LLM's state (`gpu.llm`), the
 * queue (`gpu.queue`), the timeline's spans (`timeline.span`), every job's life
 * (`job.started`, `job.progress` with step and ETA, `job.refined`, `job.params`,
 * `job.preview`, `job.image`, `job.warning`, `job.outcome`) and the gateway's LLM calls
 * (`gateway.call`).
 *
 * A new stream begins with `snapshot`, the whole picture at that event id. A reconnect with
 * `Last-Event-ID` (or `?after=`) gets the events after it, none missed and none twice, as
 * long as the server still keeps them (the last few thousand); otherwise `reset` (why), then
 * a new `snapshot`. Needs the API key like every route, and takes one of the client's
 * stream slots (MAX_STREAMS_PER_CLIENT).
 */

/** `<stream>:<n>` as this stream hands them out; anything else is refused, not guessed at. */
const lastEventId = z
  .string()
  .trim()
  .max(64)
  .regex(/^([0-9a-f]{1,32}:\d{1,15})?$/, { error: "Last-Event-ID (or after) must be an id from this stream (`<stream>:<n>`)" })
  .optional();

export function eventsRoutes(ctx: ServerContext, hub: ActivityHub) {
  return new Hono<AppEnv>().get("/events", (c) => {
    const parsed = lastEventId.safeParse(c.req.header("Last-Event-ID") ?? c.req.query("after"));
    if (!parsed.success) throw invalidRequest(parsed.error.issues[0]!.message, "after");
    const links = linksFor(c, ctx);
    claimStream(c);
    return sseResponse(c, { heartbeatMs: ctx.options.heartbeatMs, log: ctx.options.log }, async (sink) => {
      for await (const delivery of hub.follow(parsed.data, sink.signal)) {
        const frame = formatActivity(delivery, (n) => hub.eventId(n), links);
        await sink.send(frame.data, frame.event, frame.id);
      }
    });
  });
}
