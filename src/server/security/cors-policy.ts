import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import { jobIdHeader } from "../request-job.js";

/**
 * CORS stays off unless CORS_ORIGINS names the origins. Off, a web page from another origin
 * cannot read DiffuGen's answers, so a page open in a browser on the LAN cannot drive it,
 * even on loopback with no key. OpenWebUI needs none of it: it calls DiffuGen from its
 * server, and its browser only loads image links (`<img>`, which CORS does not govern).
 * On, the listed origins (or any, with `*`) get the headers, preflights included; the
 * preflight is answered before the key is checked, as CORS requires (it carries no credentials).
 */
export function corsPolicy(origins: readonly string[] | undefined): MiddlewareHandler | undefined {
  if (origins === undefined || origins.length === 0) return undefined;
  return cors({
    origin: origins.includes("*") ? "*" : [...origins],
    allowHeaders: ["Authorization", "Content-Type", "X-API-Key", "Last-Event-ID"],
    exposeHeaders: ["Retry-After", "WWW-Authenticate", "Location", jobIdHeader],
  });
}
