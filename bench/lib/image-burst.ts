/**
 * A burst as the benches send it: `size` `POST /v1/images/generations` at once, one body
 * each. Images counts the pictures answered, failed the requests that were not a 200, and
 * wallMs runs from the first request sent (`since`, on epochNow's clock) to the last answer.
 */
import { epochNow } from "./stats.js";

export interface ImageBurst {
  images: number;
  failed: number;
  since: number;
  wallMs: number;
}

export async function imageBurst(url: string, size: number, body: (i: number) => Record<string, unknown>): Promise<ImageBurst> {
  const since = epochNow();
  const outcomes = await Promise.all(
    Array.from({ length: size }, async (_, i) => {
      const res = await fetch(`${url}/v1/images/generations`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body(i)) });
      const answer = (await res.json()) as { data?: unknown[] };
      return res.status === 200 ? (answer.data?.length ?? 0) : -1;
    }),
  );
  return {
    images: outcomes.filter((n) => n > 0).reduce((a, b) => a + b, 0),
    failed: outcomes.filter((n) => n < 0).length,
    since,
    wallMs: epochNow() - since,
  };
}
