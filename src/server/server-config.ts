import { z } from "zod";

/**
 * Settings only the HTTP server reads (the rest lives in src/config). README lists them:
 *
 *   API_KEY          unset     when set, every route but /health needs `Authorization: Bearer <key>`
 *                              (or `X-API-Key: <key>`), /images/* included
 *   PUBLIC_BASE_URL  unset     how clients reach this server (`https://draw.example.com`), for
 *                              image URLs; unset = taken from each request's Host header
 *   MAX_BODY_MB      32        largest request body (JSON or an uploaded image), else 413
 *   CANCEL_ON_DISCONNECT true  whether a client going away cancels its job: true (chat and
 *                              images), false (jobs run on; fetch them from /v1/jobs), chat
 *                              (only chat jobs), images (only image jobs)
 *   SHUTDOWN_GRACE_S 30        on SIGTERM/SIGINT, how long running jobs may finish before
 *                              they are cancelled
 */

function optional<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (v === "" ? undefined : v), schema.optional());
}

const serverEnvSchema = z.object({
  API_KEY: optional(z.string().min(1)),
  PUBLIC_BASE_URL: optional(z.url({ protocol: /^https?$/ })),
  MAX_BODY_MB: optional(z.coerce.number().positive().max(1024)).default(32),
  CANCEL_ON_DISCONNECT: optional(
    z.enum(["true", "false", "1", "0", "chat", "images"], { error: "one of true, false, chat, images" }),
  ).default("true"),
  SHUTDOWN_GRACE_S: optional(z.coerce.number().nonnegative().max(3600)).default(30),
});

/** Which jobs a client's disconnect cancels. */
export interface CancelOnDisconnect {
  chat: boolean;
  images: boolean;
}

function cancelOnDisconnect(value: string): CancelOnDisconnect {
  const all = value === "true" || value === "1";
  return { chat: all || value === "chat", images: all || value === "images" };
}

export interface ServerOptions {
  apiKey: string | undefined;
  /** Without a trailing slash. */
  publicBaseUrl: string | undefined;
  maxBodyBytes: number;
  cancelOnDisconnect: CancelOnDisconnect;
  /** How long shutdown lets running jobs finish before cancelling them. */
  shutdownGraceMs: number;
  /** SSE comment heartbeat, so proxies and clients do not drop a quiet stream. */
  heartbeatMs: number;
  /** Where unexpected errors are reported. */
  log: (message: string) => void;
}

export class ServerConfigError extends Error {
  constructor(readonly problems: { variable: string; message: string }[]) {
    super("Invalid server configuration:\n" + problems.map((p) => `  ${p.variable}: ${p.message}`).join("\n"));
    this.name = "ServerConfigError";
  }
}

export const defaultHeartbeatMs = 15_000;

/** Reads and validates the server's variables; throws ServerConfigError naming every bad one. */
export function loadServerOptions(env: NodeJS.ProcessEnv = process.env): Omit<ServerOptions, "log"> {
  const parsed = serverEnvSchema.safeParse(env);
  if (!parsed.success) {
    throw new ServerConfigError(
      parsed.error.issues.map((i) => ({ variable: String(i.path[0] ?? "(environment)"), message: i.message })),
    );
  }
  const e = parsed.data;
  return {
    apiKey: e.API_KEY,
    publicBaseUrl: e.PUBLIC_BASE_URL?.replace(/\/+$/, ""),
    maxBodyBytes: Math.round(e.MAX_BODY_MB * 1024 * 1024),
    cancelOnDisconnect: cancelOnDisconnect(e.CANCEL_ON_DISCONNECT),
    shutdownGraceMs: e.SHUTDOWN_GRACE_S * 1000,
    heartbeatMs: defaultHeartbeatMs,
  };
}
