import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import type { BypassWatchdog } from "../gpu/index.js";
import { jobLogObserver, type JobRunner } from "../jobs/index.js";
import { createLogger, type Logger } from "../logging/index.js";
import { ServiceMetrics } from "../metrics/index.js";
import { apiKeyAuth } from "./auth.js";
import { jobIdHeader } from "./request-job.js";
import { ApiError, dialectOf, errorResponse, toApiError } from "./errors.js";
import { diffugenApiRoutes } from "./routes/diffugen-api.js";
import { graphStreamRoutes } from "./routes/graph-stream.js";
import { healthRoutes } from "./routes/health.js";
import { imagesFilesRoutes } from "./routes/images-files.js";
import { jobsRoutes } from "./routes/jobs.js";
import { openaiChatRoutes } from "./routes/openai-chat.js";
import { openaiImageEditsRoutes } from "./routes/openai-image-edits.js";
import { openaiImagesRoutes } from "./routes/openai-images.js";
import { openaiModelsRoutes } from "./routes/openai-models.js";
import { openaiPassthroughRoutes } from "./routes/openai-passthrough.js";
import { observabilityRoutes } from "./routes/observability.js";
import { ollamaGatewayHandler, ollamaGatewayMount, type GatewayShutdown } from "./routes/ollama-gateway.js";
import { requestMetrics } from "./request-metrics.js";
import { defaultHeartbeatMs, type ServerOptions } from "./server-config.js";
import type { AppEnv, ServerContext } from "./server-context.js";

export interface AppOptions extends Partial<ServerOptions> {
  /** The bypass watchdog bootstrap started (/health and /metrics show what it caught). */
  gate?: BypassWatchdog | undefined;
  /** Figures for /stats and /metrics (default: new ones, on a registry of their own). */
  metrics?: ServiceMetrics | undefined;
  /** The JSON-lines log (default: pino on stderr at LOG_LEVEL). */
  logger?: Logger | undefined;
  /** The server's shutdown (startServer): the Ollama gateway refuses new LLM calls, then cuts the last ones. */
  shutdown?: GatewayShutdown | undefined;
}

/**
 * The one route open with API_KEY set: health checks (load balancers, Docker). Everything
 * else needs the key, generated images included: OpenWebUI fetches image URLs with the
 * same bearer header, and chat answers carry the picture itself in `delta.images`.
 */
const isOpenPath = (path: string) => path === "/health";

/** Every path this app answers (and so guards; the Ollama gateway guards its own). */
const ownPaths = ["/health", "/images/*", "/v1/*", "/generate", "/generate/*", "/stats", "/metrics"];

/**
 * The HTTP API: one module per dialect (OpenAI models/images/edits/chat, the original
 * DiffuGen API, the raw graph stream), each a thin layer over the job runner. The runner
 * (and the capabilities it runs with) come from the entry point's bootstrap (src/bootstrap).
 */
export function createApp(runner: JobRunner, options: AppOptions = {}): Hono<AppEnv> {
  const deps = runner.deps;
  const logger = options.logger ?? createLogger({ level: deps.config.logLevel });
  // The watchdog bootstrap started: /health and /metrics show what it caught.
  const gate = options.gate;
  const metrics = options.metrics ?? new ServiceMetrics({ scheduler: deps.scheduler, gate, diffusion: deps.backends });
  const serverOptions: ServerOptions = {
    apiKey: options.apiKey,
    publicBaseUrl: options.publicBaseUrl?.replace(/\/+$/, ""),
    maxBodyBytes: options.maxBodyBytes ?? 32 * 1024 * 1024,
    cancelOnDisconnect: options.cancelOnDisconnect ?? { chat: true, images: true },
    shutdownGraceMs: options.shutdownGraceMs ?? 30_000,
    heartbeatMs: options.heartbeatMs ?? defaultHeartbeatMs,
    log: options.log ?? ((message) => logger.error({ event: "server_error" }, message)),
  };
  const ctx: ServerContext = {
    deps,
    runner,
    options: serverOptions,
    startedAt: Math.floor(Date.now() / 1000),
    metrics,
    logger,
    gate,
  };
  ctx.runner.observe(metrics);
  ctx.runner.observe(jobLogObserver(logger));
  const auth = apiKeyAuth(serverOptions.apiKey);
  const limit = bodyLimit({
    maxSize: serverOptions.maxBodyBytes,
    onError: () => {
      throw new ApiError(413, `Request body is larger than ${formatMb(serverOptions.maxBodyBytes)} (MAX_BODY_MB)`, {
        type: "invalid_request_error",
        code: "request_too_large",
      });
    },
  });

  const app = new Hono<AppEnv>();
  app.use(async (c, next) => {
    // Kept before any middleware re-wraps the request: it aborts when the client leaves.
    c.set("clientSignal", c.req.raw.signal);
    await next();
  });
  // Browsers may call the API from other origins (a custom UI); preflights are answered
  // here, before the key is checked, as CORS requires.
  // Scoped to DiffuGen's own paths: the LangGraph dev server mounts this app at "/" beside
  // its own API (langgraph.json http.app), whose routes these must not guard.
  const corsHeaders = cors({ origin: "*", allowHeaders: ["Authorization", "Content-Type", "X-API-Key", "Last-Event-ID"], exposeHeaders: ["Retry-After", "WWW-Authenticate", "Location", jobIdHeader] });
  const countRequests = requestMetrics(metrics, logger);
  for (const path of ownPaths) {
    app.use(path, countRequests);
    app.use(path, corsHeaders);
    app.use(path, (c, next) => (isOpenPath(c.req.path) ? next() : auth(c, next)));
    app.use(path, limit);
  }

  app.route("/health", healthRoutes(ctx));
  app.route("/images", imagesFilesRoutes(ctx));
  app.route("/v1", openaiModelsRoutes(ctx));
  app.route("/v1", openaiImagesRoutes(ctx));
  app.route("/v1", openaiImageEditsRoutes(ctx));
  // Before the chat route: a chat for an Ollama model goes to Ollama, DiffuGen's fall through.
  app.route("/v1", openaiPassthroughRoutes(ctx, { waitStatus: options.gatewayWaitStatus ?? true }));
  app.route("/v1", openaiChatRoutes(ctx));
  app.route("/v1", graphStreamRoutes(ctx));
  app.route("/v1", jobsRoutes(ctx));
  // Ollama's API for every LLM client on the box (routes/ollama-gateway.ts). It checks the key
  // and the body limit itself, to answer in Ollama's error shape and to let blob uploads
  // stream through unbounded.
  app.use(`${ollamaGatewayMount}/*`, countRequests);
  app.use(`${ollamaGatewayMount}/*`, corsHeaders);
  app.all(`${ollamaGatewayMount}/*`, ollamaGatewayHandler(ctx, { mountPath: ollamaGatewayMount, shutdown: options.shutdown }));
  app.route("/", diffugenApiRoutes(ctx));
  app.route("/", observabilityRoutes(ctx));

  app.notFound((c) =>
    errorResponse(
      new ApiError(404, `Unknown request URL: ${c.req.method} ${c.req.path}`, { type: "invalid_request_error", code: "unknown_url" }),
      dialectOf(c.req.path),
    ),
  );
  app.onError((err, c) => {
    const apiError =
      err instanceof HTTPException && !(err.cause instanceof ApiError)
        ? new ApiError(err.status, err.message || "Request failed", { type: err.status >= 500 ? "server_error" : "invalid_request_error" })
        : toApiError(err instanceof HTTPException ? err.cause : err, serverOptions.log);
    return errorResponse(apiError, dialectOf(c.req.path));
  });
  return app;
}

function formatMb(bytes: number): string {
  const mb = bytes / (1024 * 1024);
  return mb >= 1 ? `${Math.round(mb * 10) / 10} MB` : `${Math.round(bytes / 1024)} KB`;
}
