import { createHash, timingSafeEqual } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { ApiError } from "./errors.js";

/**
 * Optional API key. With API_KEY set, a request needs `Authorization: Bearer <key>` (what
 * OpenAI clients and OpenWebUI send) or `X-API-Key: <key>` (what the original DiffuGen
 * clients sent). Without it, everything is open, which start-up allows on loopback only
 * (security/listener-safety.ts) unless ALLOW_UNAUTHENTICATED says the network is trusted.
 * CORS preflights (OPTIONS) carry no credentials and pass; the cors middleware, when
 * CORS_ORIGINS turns it on, answers them.
 */
export function apiKeyAuth(apiKey: string | undefined): MiddlewareHandler {
  const check = apiKeyCheck(apiKey);
  return async (c, next) => {
    if (c.req.method === "OPTIONS") return next();
    const verdict = check(c);
    if (verdict === "missing") {
      throw new ApiError(401, "Missing API key: send it as 'Authorization: Bearer <key>'", {
        type: "invalid_request_error",
        code: "missing_api_key",
      });
    }
    if (verdict === "wrong") {
      throw new ApiError(401, "Incorrect API key provided", { type: "invalid_request_error", code: "invalid_api_key" });
    }
    return next();
  };
}

/** What a request's credentials are worth: `open` when no key is set. */
export type KeyVerdict = "open" | "valid" | "missing" | "wrong";

/** Checks a request's key against API_KEY, for routes that answer differently with it (/health, /images). */
export function apiKeyCheck(apiKey: string | undefined): (c: Context) => KeyVerdict {
  const expected = apiKey === undefined ? undefined : digest(apiKey);
  return (c) => {
    if (expected === undefined) return "open";
    const header = c.req.header("authorization");
    const bearer = header?.match(/^Bearer\s+(.+)$/i)?.[1]?.trim();
    const given = bearer ?? c.req.header("x-api-key")?.trim();
    if (given === undefined || given === "") return "missing";
    // Compare digests: equal length, constant time, and the key's length does not leak.
    return timingSafeEqual(digest(given), expected) ? "valid" : "wrong";
  };
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}
