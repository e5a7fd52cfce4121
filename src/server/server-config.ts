import { z } from "zod";
import { securityEnvSchema, securityOptionsFrom, type SecurityOptions } from "./security/security-options.js";

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
 *   OLLAMA_GATEWAY_PORT unset  when set, a second listener serves Ollama's API (the /ollama
 *                              gateway) at its root, for clients that only take a host:port
 *                              (`OLLAMA_HOST=127.0.0.1:11435 ollama run ...`); 0 picks a free port
 *   OLLAMA_GATEWAY_HOST 127.0.0.1  the address that listener binds
 *   GATEWAY_WAIT_STATUS true   whether a streaming chat for an Ollama model that has to wait
 *                              for the GPU gets OpenWebUI status chunks meanwhile (false for
 *                              strict OpenAI clients: they then get Ollama's stream only)
 *
 * and the exposure settings (ALLOW_UNAUTHENTICATED, CORS_ORIGINS, IMAGE_URL_TTL_S,
 * MAX_STREAMS_PER_CLIENT, MAX_MODEL_UPLOAD_GB, BODY_TIMEOUT_S): security/security-options.ts.
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
  OLLAMA_GATEWAY_PORT: optional(
    z.coerce.number({ error: "a port number (0-65535)" }).int({ error: "a port number (0-65535)" }).min(0, { error: "a port number (0-65535)" }).max(65535, { error: "a port number (0-65535)" }),
  ),
  OLLAMA_GATEWAY_HOST: optional(z.string().trim().min(1).regex(/^[^\s/]+$/, { error: "an address to listen on, such as 127.0.0.1 or 0.0.0.0" })).default("127.0.0.1"),
  GATEWAY_WAIT_STATUS: optional(z.enum(["true", "false", "1", "0"], { error: "true or false" })).default("true"),
  ...securityEnvSchema,
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

export interface ServerOptions extends SecurityOptions {
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
  /** OLLAMA_GATEWAY_PORT: a second listener with Ollama's API at its root (startServer); unset, none. */
  ollamaGatewayPort?: number | undefined;
  /** OLLAMA_GATEWAY_HOST (default 127.0.0.1). */
  ollamaGatewayHost?: string | undefined;
  /**
   * Status chunks while an OpenAI passthrough chat waits for the GPU (default true).
   * Optional: createApp hands it to the passthrough routes (src/server/routes/openai-passthrough.ts).
   */
  gatewayWaitStatus?: boolean | undefined;
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
    ollamaGatewayPort: e.OLLAMA_GATEWAY_PORT,
    ollamaGatewayHost: e.OLLAMA_GATEWAY_HOST,
    gatewayWaitStatus: e.GATEWAY_WAIT_STATUS === "true" || e.GATEWAY_WAIT_STATUS === "1",
    heartbeatMs: defaultHeartbeatMs,
    ...securityOptionsFrom(e),
  };
}
