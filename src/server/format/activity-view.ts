import path from "node:path";
import type { ActivityEvent, ActivitySnapshot, LiveJob } from "../activity/activity-events.js";
import type { ActivityDelivery } from "../activity/activity-hub.js";
import type { ImageLinks } from "../image-links.js";
import { formatJob, snakeKeys } from "./job-view.js";

/**
 * The operator page's stream (GET /v1/events) as clients see it: `event:` is the event's
 * type (`gpu.holder`, `job.progress`...), `id:` is `<stream>:<n>`, the data is JSON in the
 * snake_case of the rest of the API, times in epoch milliseconds (`at`, `since`, `start`,
 * `end`). Images are links (signed when API_KEY is set), previews base64 PNG (`b64_json`),
 * jobs as GET /v1/jobs/:id shows them.
 */
export interface ActivityFrame {
  event: string;
  data: unknown;
  id: string;
}

export function formatActivity(delivery: ActivityDelivery, eventId: (n: number) => string, links: ImageLinks): ActivityFrame {
  switch (delivery.kind) {
    case "snapshot":
      return { event: "snapshot", id: eventId(delivery.snapshot.lastId), data: formatSnapshot(delivery.snapshot, eventId) };
    case "reset":
      return { event: "reset", id: eventId(delivery.lastId), data: { reason: delivery.reason } };
    case "event":
      return { event: delivery.event.type, id: eventId(delivery.id), data: formatEvent(delivery.event, links) };
  }
}

function formatSnapshot(snapshot: ActivitySnapshot, eventId: (n: number) => string) {
  return {
    last_id: eventId(snapshot.lastId),
    at: snapshot.at,
    gpu: snakeKeys(snapshot.gpu),
    spans: snapshot.spans.map(snakeKeys),
    jobs: snapshot.jobs.map(formatLiveJob),
    calls: snapshot.calls.map(snakeKeys),
  };
}

function formatLiveJob(job: LiveJob) {
  const { preview, ...rest } = job;
  return { ...snakeKeys(rest), preview: preview ? { b64_json: preview.pngBase64, width: preview.width, height: preview.height } : null };
}

function formatEvent(event: ActivityEvent, links: ImageLinks): Record<string, unknown> {
  switch (event.type) {
    case "job.started":
    case "job.outcome":
      return { at: event.at, job: formatJob(event.job, links) };
    case "job.image": {
      const { file, type: _type, ...rest } = event;
      return { ...snakeKeys(rest), url: links.image(path.basename(file)) };
    }
    case "job.preview": {
      const { pngBase64, type: _type, ...rest } = event;
      return { ...snakeKeys(rest), b64_json: pngBase64 };
    }
    default: {
      const { type: _type, ...rest } = event;
      return snakeKeys(rest);
    }
  }
}
