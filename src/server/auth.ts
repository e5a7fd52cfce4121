import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors.js";

/**
 * Optional API key. With API_KEY set, a request needs `Authorization: Bearer <key>` (what
 * OpenAI clients and OpenWebUI send) or `X-API-Key: <key>` (what the original DiffuGen
 * clients sent). Without it, everything is open: the service is meant for a LAN box.
 * CORS preflights (OPTIONS) carry no credentials and pass; the cors middleware answers them.
 */
export function apiKeyAuth(apiKey: string | undefined): MiddlewareHandler {
  const expected = apiKey === undefined ? undefined : digest(apiKey);
  return async (c, next) => {
    if (expected === undefined || c.req.method === "OPTIONS") return next();
    const header = c.req.header("authorization");
    const bearer = header?.match(/^Bearer\s+(.+)$/i)?.[1]?.trim();
    const given = bearer ?? c.req.header("x-api-key")?.trim();
    if (given === undefined || given === "") {
      throw new ApiError(401, "Missing API key: send it as 'Authorization: Bearer <key>'", {
        type: "invalid_request_error",
        code: "missing_api_key",
      });
    }
    // Compare digests: equal length, constant time, and the key's length does not leak.
    if (!timingSafeEqual(digest(given), expected)) {
      throw new ApiError(401, "Incorrect API key provided", { type: "invalid_request_error", code: "invalid_api_key" });
    }
    return next();
  };
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}
