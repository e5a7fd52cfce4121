import { Hono } from "hono";
import type { AppEnv, ServerContext } from "../server-context.js";

/**
 * GET /stats: the service's figures as JSON (what `diffugen status` shows): requests,
 * jobs by outcome, images, failures, GPU swaps with mean unload/reload times, the GPU
 * queue, and sd.cpp's measured seconds per step per model.
 *
 * GET /metrics: the same figures in Prometheus' text format, plus the process' own
 * (CPU, memory, event loop, GC).
 *
 * Both need the API key when one is set: they name jobs and models.
 */
export function observabilityRoutes(ctx: ServerContext) {
  const { metrics } = ctx;
  return new Hono<AppEnv>()
    .get("/stats", (c) => {
      c.header("Cache-Control", "no-store");
      return c.json(metrics.snapshot());
    })
    .get("/metrics", async (c) => {
      const body = await metrics.render();
      return c.body(body, 200, { "Content-Type": metrics.contentType, "Cache-Control": "no-store" });
    });
}
