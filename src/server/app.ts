import { Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { BypassWatchdog } from "../gpu/index.js";
import { jobLogObserver, type JobRunner } from "../jobs/index.js";
import { createLogger, type Logger } from "../logging/index.js";
import { ServiceMetrics } from "../metrics/index.js";
import { ActivityHub } from "./activity/activity-hub.js";
import { apiKeyAuth } from "./auth.js";
import { ApiError, dialectOf, errorResponse, toApiError } from "./errors.js";
import { isModelUpload } from "./gateway/gateway-limits.js";
import { diffugenApiRoutes } from "./routes/diffugen-api.js";
import { eventsRoutes } from "./routes/events.js";
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
import { bodyDeadline } from "./security/body-deadline.js";
import { corsPolicy } from "./security/cors-policy.js";
import { imageAccess } from "./security/image-access.js";
import { defaultSecurityOptions } from "./security/security-options.js";
import { ImageUrlSigner } from "./security/signed-image-urls.js";
import { StreamSlots, streamSlotsMiddleware } from "./security/stream-slots.js";
import { defaultHeartbeatMs, type ServerOptions } from "./server-config.js";
import type { AppEnv, ServerContext } from "./server-context.js";
import { operatorPagePaths, operatorPageRoutes } from "./ui/page-routes.js";

export interface AppOptions extends Partial<ServerOptions> {
  /** The bypass watchdog bootstrap started (/health and /metrics show what it caught). */
  gate?: BypassWatchdog | undefined;
  /** Figures for /stats and /metrics (default: new ones, on a registry of their own). */
  metrics?: ServiceMetrics | undefined;
  /** The JSON-lines log (default: pino on stderr at LOG_LEVEL). */
  logger?: Logger | undefined;
  /** The server's shutdown (startServer): the Ollama gateway refuses new LLM calls, then cuts the last ones. */
  shutdown?: GatewayShutdown | undefined;
  /** Epoch milliseconds, for when signed image links expire (default Date.now; tests move it). */
  clock?: (() => number) | undefined;
}

/**
 * The one route open with API_KEY set: health checks (load balancers, Docker), which then
 * answer `{status}` alone without the key. Everything else needs the key; generated images
 * take a signed link instead (security/image-access.ts). (The operator page's static shell,
 * `/` and `/ui`, lies outside these paths and asks for the key itself: ui/page-routes.tsx.)
 */
const isOpenPath = (path: string) => path === "/health";
const isImagePath = (path: string) => path.startsWith("/images/");

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
  const metrics = options.metrics ?? new ServiceMetrics({ scheduler: deps.scheduler, gate, diffusion: deps.backends, vram: deps.vram });
  const serverOptions: ServerOptions = {
    apiKey: options.apiKey,
    publicBaseUrl: options.publicBaseUrl?.replace(/\/+$/, ""),
    maxBodyBytes: options.maxBodyBytes ?? 32 * 1024 * 1024,
    cancelOnDisconnect: options.cancelOnDisconnect ?? { chat: true, images: true },
    shutdownGraceMs: options.shutdownGraceMs ?? 30_000,
    heartbeatMs: options.heartbeatMs ?? defaultHeartbeatMs,
    log: options.log ?? ((message) => logger.error({ event: "server_error" }, message)),
    ...defaultSecurityOptions,
    ...definedOnly({
      allowUnauthenticated: options.allowUnauthenticated,
      corsOrigins: options.corsOrigins,
      imageUrlTtlMs: options.imageUrlTtlMs,
      maxStreamsPerClient: options.maxStreamsPerClient,
      maxModelUploadBytes: options.maxModelUploadBytes,
      bodyTimeoutMs: options.bodyTimeoutMs,
    }),
  };
  // With a key, image links are signed so a browser can load them (IMAGE_URL_TTL_S=0: not).
  const imageSigner =
    serverOptions.apiKey !== undefined && serverOptions.imageUrlTtlMs > 0 ? new ImageUrlSigner(serverOptions.apiKey, serverOptions.imageUrlTtlMs, options.clock) : undefined;
  // The operator page's one stream (GET /v1/events): the scheduler, the jobs, the gateway's calls.
  const activity = new ActivityHub({ scheduler: deps.scheduler, runner, backendOf: () => deps.backends.health().lastBackend });
  const ctx: ServerContext = {
    deps,
    runner,
    options: serverOptions,
    startedAt: Math.floor(Date.now() / 1000),
    metrics,
    logger,
    gate,
    imageSigner,
    gatewayCalls: activity,
  };
  ctx.runner.observe(metrics);
  ctx.runner.observe(jobLogObserver(logger));
  const auth = apiKeyAuth(serverOptions.apiKey);
  const images = imageAccess(serverOptions.apiKey, imageSigner);
  const guard: MiddlewareHandler<AppEnv> = (c, next) => (isOpenPath(c.req.path) ? next() : isImagePath(c.req.path) ? images(c, next) : auth(c, next));
  const deadline = bodyDeadline({
    timeoutMs: serverOptions.bodyTimeoutMs,
    isUpload: (method, path) => path.startsWith(`${ollamaGatewayMount}/`) && isModelUpload(method, path.slice(ollamaGatewayMount.length)),
  });
  const streams = streamSlotsMiddleware(new StreamSlots(serverOptions.maxStreamsPerClient));
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
  // CORS only for the origins CORS_ORIGINS names (security/cors-policy.ts); preflights are
  // answered here, before the key is checked, as CORS requires.
  // Scoped to DiffuGen's own paths: the LangGraph dev server mounts this app at "/" beside
  // its own API (langgraph.json http.app), whose routes these must not guard.
  const corsHeaders = corsPolicy(serverOptions.corsOrigins);
  const countRequests = requestMetrics(metrics, logger);
  for (const path of ownPaths) {
    app.use(path, countRequests);
    if (corsHeaders) app.use(path, corsHeaders);
    app.use(path, deadline);
    app.use(path, guard);
    app.use(path, limit);
    app.use(path, streams);
  }

  // The operator page (GET /, /ui): a static shell and its script, open like /health. It shows
  // nothing of the box by itself: its data comes from the API, with the key (ui/page-routes.ts).
  for (const path of operatorPagePaths) app.use(path, countRequests);
  app.route("/", operatorPageRoutes(ctx));

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
  app.route("/v1", eventsRoutes(ctx, activity));
  // Ollama's API for every LLM client on the box (routes/ollama-gateway.ts). It checks the key
  // and the body limits itself, to answer in Ollama's error shape and to let model uploads
  // stream through under their own limit (MAX_MODEL_UPLOAD_GB).
  app.use(`${ollamaGatewayMount}/*`, countRequests);
  if (corsHeaders) app.use(`${ollamaGatewayMount}/*`, corsHeaders);
  app.use(`${ollamaGatewayMount}/*`, deadline);
  app.use(`${ollamaGatewayMount}/*`, streams);
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

function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function formatMb(bytes: number): string {
  const mb = bytes / (1024 * 1024);
  return mb >= 1 ? `${Math.round(mb * 10) / 10} MB` : `${Math.round(bytes / 1024)} KB`;
}
