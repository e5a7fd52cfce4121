import type { Context, MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
import type { Logger } from "../logging/index.js";
import type { ServiceMetrics } from "../metrics/index.js";

/** Paths polled by machines: their requests are logged at debug, not info. */
const pollingPaths = new Set(["/health", "/metrics", "/stats"]);

/**
 * Counts and times every request to DiffuGen's paths (and logs it): method, the route
 * pattern that matched, status, time until the response began. The route is the pattern
 * (`/images/:name`), never the raw path, so the number of series stays bounded: a request
 * no handler matched is labelled with the guarding pattern it fell under (`/v1/*`).
 *
 * Registered once per guarded path pattern; a request two patterns match (`/generate`
 * and `/generate/*`) is still counted once.
 */
export function requestMetrics(metrics: ServiceMetrics, logger: Logger): MiddlewareHandler {
  const counted = new WeakSet<Context>();
  const log = logger.child({ component: "http" });
  return async (c, next) => {
    if (counted.has(c)) return next();
    counted.add(c);
    const started = performance.now();
    try {
      await next();
    } finally {
      // Errors reach app.onError before this point, so c.res is the response sent.
      const durationMs = performance.now() - started;
      const route = routePath(c, -1) || c.req.path;
      const status = c.res.status;
      metrics.requestFinished({ method: c.req.method, route, status, durationSeconds: durationMs / 1000 });
      const fields = { event: "http_request", method: c.req.method, path: c.req.path, route, status, duration_ms: Math.round(durationMs) };
      if (status >= 500) log.warn(fields, "request failed");
      else if (pollingPaths.has(c.req.path)) log.debug(fields, "request");
      else log.info(fields, "request");
    }
  };
}
