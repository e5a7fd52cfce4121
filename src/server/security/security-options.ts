import { z } from "zod";

/**
 * The server's exposure settings (issue 16, "safe by default on a home network"). Read with
 * the other server variables (server-config.ts merges this schema); README lists them:
 *
 *   ALLOW_UNAUTHENTICATED  false   start on a non-loopback HOST (or OLLAMA_GATEWAY_HOST) without
 *                                  API_KEY, for a network you trust; warns at every start
 *   CORS_ORIGINS           unset   browser origins allowed to call the API from their pages
 *                                  (comma-separated, or `*`); unset, no CORS headers at all
 *   IMAGE_URL_TTL_S        604800  with API_KEY set, image links in answers are signed and work
 *                                  without the key for this long (a week); 0: no signed links
 *   MAX_STREAMS_PER_CLIENT 8       streaming answers one client address may have open at once
 *                                  (429 beyond); 0: no limit
 *   MAX_MODEL_UPLOAD_GB    64      largest body of the gateway's model uploads (/api/blobs,
 *                                  /api/create), which MAX_BODY_MB does not bound
 *   BODY_TIMEOUT_S         30      a request's headers, then its body, must arrive within this
 *                                  long (model uploads: no pause that long between two chunks)
 */

function optional<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (v === "" ? undefined : v), schema.optional());
}

const origin = z.union([z.literal("*"), z.url({ protocol: /^https?$/, error: "an origin such as https://ui.example (scheme, host, optional port)" })]);

export const securityEnvSchema = {
  ALLOW_UNAUTHENTICATED: optional(z.enum(["true", "false", "1", "0"], { error: "true or false" })).default("false"),
  CORS_ORIGINS: optional(
    z
      .string()
      .transform((list) => list.split(",").map((o) => o.trim()).filter((o) => o !== ""))
      .pipe(z.array(origin).min(1, { error: "one origin or more, comma-separated, or *" })),
  ),
  IMAGE_URL_TTL_S: optional(z.coerce.number().int().nonnegative().max(366 * 86_400)).default(7 * 86_400),
  MAX_STREAMS_PER_CLIENT: optional(z.coerce.number().int().nonnegative().max(100_000)).default(8),
  MAX_MODEL_UPLOAD_GB: optional(z.coerce.number().positive().max(100_000)).default(64),
  BODY_TIMEOUT_S: optional(z.coerce.number().positive().max(3600)).default(30),
};

type SecurityEnv = z.output<z.ZodObject<typeof securityEnvSchema>>;

export interface SecurityOptions {
  /** ALLOW_UNAUTHENTICATED: a non-loopback listener may run without API_KEY (with a warning). */
  allowUnauthenticated: boolean;
  /** CORS_ORIGINS: the origins answered with CORS headers (`*`: any); undefined, none. */
  corsOrigins: readonly string[] | undefined;
  /** IMAGE_URL_TTL_S in ms: how long a signed image link works; 0, links are not signed. */
  imageUrlTtlMs: number;
  /** MAX_STREAMS_PER_CLIENT: streaming answers open at once per client address; 0, no limit. */
  maxStreamsPerClient: number;
  /** MAX_MODEL_UPLOAD_GB in bytes: the gateway's /api/blobs and /api/create bodies. */
  maxModelUploadBytes: number;
  /** BODY_TIMEOUT_S in ms: headers, then body, must have arrived within it (uploads: no pause that long). */
  bodyTimeoutMs: number;
}

export const defaultSecurityOptions: SecurityOptions = {
  allowUnauthenticated: false,
  corsOrigins: undefined,
  imageUrlTtlMs: 7 * 86_400_000,
  maxStreamsPerClient: 8,
  maxModelUploadBytes: 64 * 1024 ** 3,
  bodyTimeoutMs: 30_000,
};

export function securityOptionsFrom(e: SecurityEnv): SecurityOptions {
  return {
    allowUnauthenticated: e.ALLOW_UNAUTHENTICATED === "true" || e.ALLOW_UNAUTHENTICATED === "1",
    // An origin is scheme://host[:port]: a trailing slash someone typed would never match.
    corsOrigins: e.CORS_ORIGINS?.map((o) => (o === "*" ? o : new URL(o).origin)),
    imageUrlTtlMs: e.IMAGE_URL_TTL_S * 1000,
    maxStreamsPerClient: e.MAX_STREAMS_PER_CLIENT,
    maxModelUploadBytes: Math.round(e.MAX_MODEL_UPLOAD_GB * 1024 ** 3),
    bodyTimeoutMs: Math.round(e.BODY_TIMEOUT_S * 1000),
  };
}
