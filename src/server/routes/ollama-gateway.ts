import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { Context, Handler } from "hono";
import { AcquireAbortedError, QueueFullError, SchedulerClosedError, type GpuLease } from "../../gpu/index.js";
import type { GatewayCallKind } from "../../metrics/index.js";
import { apiKeyAuth } from "../auth.js";
import { ApiError, errorHeaders } from "../errors.js";
import { modelUploadRoutes, streamsAnswer } from "../gateway/gateway-limits.js";
import { leaseBoundBody, type BodyEnd } from "../gateway/lease-bound-body.js";
import { classifyOllamaCall, isBlobDigest, modelNameProblem, type OllamaCall } from "../gateway/ollama-calls.js";
import { observeGatedCall } from "../gateway/gateway-observer.js";
import { GatewayError, gatewayErrorResponse } from "../gateway/ollama-errors.js";
import { checkModelFields, multipartModel, parseJsonObject, readBodyWithin, refuseEncodedBody, streamWithin } from "../gateway/ollama-request-body.js";
import { matchOllamaRoute, type OllamaRoute } from "../gateway/ollama-routes.js";
import { callOllama } from "../gateway/upstream.js";
import { claimStream } from "../security/stream-slots.js";
import type { AppEnv, ServerContext } from "../server-context.js";

/**
 * Ollama's API, for every LLM client on the box (OpenWebUI's Ollama connection, the `ollama`
 * CLI, LangChain's ChatOllama, scripts): mounted at `/ollama` (and, with
 * OLLAMA_GATEWAY_PORT, at the root of a second listener), so a client only changes its base
 * URL. Every route of Ollama's table (gateway/ollama-routes.ts) is relayed as it is: status,
 * headers and body, streams chunk by chunk.
 *
 * A call that can put a model in VRAM (gateway/ollama-calls.ts) first takes an LLM lease from
 * the GPU scheduler, and holds it until its answer has been sent or its client has gone: it
 * waits in the scheduler's queue while an image is being drawn and is never sent early, so
 * the invariant holds for all LLM traffic, not only DiffuGen's own. An unload goes at once;
 * lists, shows, pulls and blobs need no lease.
 *
 * Refusals are the gateway's own and come before anything is forwarded: the API key (401),
 * unknown routes (404/405), bodies that are too big (413: MAX_BODY_MB, or MAX_MODEL_UPLOAD_GB
 * for the model uploads, which stream through counted), not JSON or name a bad model, file or
 * blob (400), too many streams open from the client (429, MAX_STREAMS_PER_CLIENT), a full
 * queue (429 with Retry-After), shutdown (503), Ollama unreachable (502); a body that stops
 * arriving is cut off (408, BODY_TIMEOUT_S). All in Ollama's error shape for the route
 * (gateway/ollama-errors.ts).
 */

/** Where the main listener serves the gateway: the base URL Ollama clients are given is `http://HOST:PORT/ollama`. */
export const ollamaGatewayMount = "/ollama";

/** The server's shutdown, as the gateway sees it (startServer). */
export interface GatewayShutdown {
  /** Aborted when shutdown begins: from then on a gated call gets 503. */
  closing: AbortSignal;
  /** Aborted when the grace period is over: gated answers still relaying are cut (their leases go back). */
  cut: AbortSignal;
}

export interface OllamaGatewayOptions {
  /** Where the gateway is mounted in the app (`/ollama`); the rest of the path is Ollama's. */
  mountPath: string;
  shutdown?: GatewayShutdown | undefined;
}

/** What a call is once its body has been read and checked. */
interface PreparedCall {
  call: OllamaCall;
  /** Ollama answers it with a stream (NDJSON or SSE): it takes one of the client's stream slots. */
  streams: boolean;
  /** The path and query sent to Ollama. */
  upstreamPath: string;
  body: Uint8Array | ReadableStream<Uint8Array> | null;
}

const unknownRoute = "(unknown)";

export function ollamaGatewayHandler(ctx: ServerContext, options: OllamaGatewayOptions): Handler<AppEnv> {
  const metrics = ctx.metrics.gateway;
  const log = ctx.logger.child({ component: "gateway" });
  const auth = apiKeyAuth(ctx.options.apiKey);
  const baseUrl = ctx.deps.config.llm.baseUrl;
  const scheduler = ctx.deps.scheduler;

  /** The one line a gated call leaves in the log, when it is over. */
  const logGated = (fields: { route: string; model: string; jobId: string; waitMs: number; status: number; startedAt: number; outcome: string }) => {
    log.info(
      {
        event: "gateway_call",
        route: fields.route,
        model: fields.model,
        job_id: fields.jobId,
        wait_ms: round(fields.waitMs),
        status: fields.status,
        duration_ms: round(performance.now() - fields.startedAt),
        outcome: fields.outcome,
      },
      "ollama call",
    );
  };

  async function serveGated(c: Context<AppEnv>, clientGone: AbortSignal, route: OllamaRoute, prepared: PreparedCall, model: string, startedAt: number): Promise<Response> {
    const jobId = `ollama-${randomUUID()}`;
    // The operator page hears of the call (GET /v1/events); its lease is the scheduler's to show.
    const watch = observeGatedCall(ctx.gatewayCalls, { id: jobId, via: "ollama", route: route.pattern, model });
    const record = (status: number, waitMs: number, outcome: string) => {
      metrics.callFinished({ route: route.pattern, kind: "gated", model, status });
      logGated({ route: route.pattern, model, jobId, waitMs, status, startedAt, outcome });
      watch.end(outcome, status);
    };
    if (options.shutdown?.closing.aborted) {
      record(503, 0, "shutting_down");
      throw new GatewayError(503, "DiffuGen is shutting down", { "Retry-After": "5" });
    }

    const admittedAt = performance.now();
    let lease: GpuLease;
    try {
      lease = await scheduler.acquire("llm", { jobId, signal: clientGone });
    } catch (err) {
      const waitMs = performance.now() - admittedAt;
      const refusal = acquireRefusal(err);
      record(refusal.status, waitMs, refusal.outcome);
      throw refusal.error;
    }
    const waitMs = performance.now() - admittedAt;
    metrics.gpuWaited(route.pattern, waitMs / 1000);
    metrics.leaseTaken();

    let upstream: Response;
    try {
      upstream = await callOllama(baseUrl, { method: c.req.method, path: prepared.upstreamPath, headers: c.req.raw.headers, body: prepared.body, signal: clientGone });
    } catch (err) {
      await lease.release();
      metrics.leaseReturned();
      if (clientGone.aborted) {
        record(499, waitMs, "client_gone");
        throw clientGoneError();
      }
      record(502, waitMs, "ollama_unreachable");
      throw unreachable(baseUrl, err);
    }
    metrics.callFinished({ route: route.pattern, kind: "gated", model, status: upstream.status });
    const onEnd = (how: BodyEnd) => {
      metrics.leaseReturned();
      logGated({ route: route.pattern, model, jobId, waitMs, status: upstream.status, startedAt, outcome: how });
      watch.end(how, upstream.status);
    };
    return relay(upstream, leaseBoundBody(upstream.body, lease, clientGone, onEnd, options.shutdown?.cut));
  }

  async function serveAtOnce(c: Context<AppEnv>, signal: AbortSignal, route: OllamaRoute, prepared: PreparedCall): Promise<Response> {
    const kind = prepared.call.kind;
    let upstream: Response;
    try {
      upstream = await callOllama(baseUrl, { method: c.req.method, path: prepared.upstreamPath, headers: c.req.raw.headers, body: prepared.body, signal });
    } catch (err) {
      // The upload's own failure (too large, stalled): the client's doing, not Ollama's.
      if (err instanceof GatewayError || err instanceof ApiError) {
        metrics.callFinished({ route: route.pattern, kind, status: err.status });
        throw err;
      }
      const status = signal.aborted ? 499 : 502;
      metrics.callFinished({ route: route.pattern, kind, status });
      throw status === 499 ? clientGoneError() : unreachable(baseUrl, err);
    }
    metrics.callFinished({ route: route.pattern, kind, status: upstream.status });
    if (prepared.call.kind === "unload") {
      log.info({ event: "gateway_unload", route: route.pattern, model: prepared.call.model, status: upstream.status }, "ollama unload, sent at once");
    }
    return relay(upstream, upstream.body);
  }

  return async (c) => {
    const startedAt = performance.now();
    const url = new URL(c.req.url);
    // Ollama's path, from the path as sent (percent-escapes and all): the mount stripped, or none
    // when the router matched a spelling of it (`/oll%61ma/...`) that is not the mount itself.
    const mount = options.mountPath;
    const ollamaPath = url.pathname === mount ? "/" : url.pathname.startsWith(`${mount}/`) ? url.pathname.slice(mount.length) : undefined;
    const shape = ollamaPath ?? "/";
    let routeLabel = unknownRoute;
    let kind: GatewayCallKind = "refused";
    try {
      await authorize(auth, c);
      const match = ollamaPath === undefined ? ({ kind: "unknown" } as const) : matchOllamaRoute(c.req.method, ollamaPath);
      if (match.kind === "unknown") throw new GatewayError(404, `unknown Ollama API route: ${c.req.method} ${shown(ollamaPath ?? url.pathname)}`);
      if (match.kind === "method_not_allowed") {
        throw new GatewayError(405, `method ${c.req.method} not allowed on ${shown(shape)}`, { Allow: match.allowed.join(", ") });
      }
      const route = match.route;
      routeLabel = route.pattern;
      const prepared = await prepare(c, route, match.params, url.search, { body: ctx.options.maxBodyBytes, modelUpload: ctx.options.maxModelUploadBytes });
      kind = prepared.call.kind;
      if (prepared.streams) claimStream(c);
      // Ends the call when its client goes (shutdown cuts a gated answer still relaying too: leaseBoundBody).
      const signal = c.var.clientSignal ?? c.req.raw.signal;
      if (prepared.call.kind === "gated") return await serveGated(c, signal, route, prepared, prepared.call.model, startedAt);
      return await serveAtOnce(c, signal, route, prepared);
    } catch (caught) {
      // DiffuGen's own refusals (the stream limit, a body cut off) in Ollama's shape.
      const err = caught instanceof ApiError ? new GatewayError(caught.status, caught.message, retryAfterOf(caught)) : caught;
      if (err instanceof GatewayError) {
        // Refused before it was classified (key, route, body); a classified call counted itself.
        if (kind === "refused") metrics.callFinished({ route: routeLabel, kind: "refused", status: err.status });
        return gatewayErrorResponse(shape, err);
      }
      ctx.options.log(`[diffugen] ollama gateway: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      metrics.callFinished({ route: routeLabel, kind: "refused", status: 500 });
      return gatewayErrorResponse(shape, new GatewayError(500, "internal error in DiffuGen's Ollama gateway"));
    }
  };
}

/** Body limits: MAX_BODY_MB for every call but the model uploads, which get MAX_MODEL_UPLOAD_GB. */
interface BodyLimits {
  body: number;
  modelUpload: number;
}

/** Reads and checks the call's body for its route, and decides what the call is. */
async function prepare(c: Context<AppEnv>, route: OllamaRoute, params: Record<string, string>, search: string, limits: BodyLimits): Promise<PreparedCall> {
  const request = c.req.raw;
  const upstreamPath = `${pathFor(route, params)}${search}`;
  const upload = modelUploadRoutes.has(route.pattern);
  const maxBytes = upload ? limits.modelUpload : limits.body;
  const limitName = upload ? "MAX_MODEL_UPLOAD_GB" : "MAX_BODY_MB";
  switch (route.body) {
    case "none":
      return { call: { kind: "management" }, streams: false, upstreamPath, body: null };
    case "stream":
      // A blob upload: as many gigabytes as the model has, streamed through, never buffered.
      return { call: { kind: "management" }, streams: false, upstreamPath, body: streamWithin(request, maxBytes, limitName) };
    case "raw":
      refuseEncodedBody(request);
      return { call: { kind: "management" }, streams: false, upstreamPath, body: await readBodyWithin(request, maxBytes, limitName) };
    case "multipart": {
      refuseEncodedBody(request);
      const bytes = await readBodyWithin(request, maxBytes, limitName);
      const model = await multipartModel(bytes, request.headers.get("content-type"));
      return { call: checkedCall(route, { model }), streams: false, upstreamPath, body: bytes };
    }
    case "json": {
      refuseEncodedBody(request);
      // /api/create's body is a JSON manifest naming blobs already uploaded; it is read whole
      // like any other (its model names are checked), under the upload limit.
      const bytes = await readBodyWithin(request, maxBytes, limitName);
      const body = parseJsonObject(bytes);
      checkModelFields(route.pattern, body);
      // The bytes as the client sent them, not a re-serialisation: Ollama reads what was written.
      return { call: checkedCall(route, body), streams: streamsAnswer(route.pattern, body), upstreamPath, body: bytes };
    }
  }
}

/** An API error's Retry-After, as the gateway's headers. */
function retryAfterOf(err: ApiError): Record<string, string> {
  const retryAfter = errorHeaders(err)["Retry-After"];
  return retryAfter === undefined ? {} : { "Retry-After": retryAfter };
}

/** The call a body makes on its route; a call that would load a model must name a valid one. */
function checkedCall(route: OllamaRoute, body: Record<string, unknown>): OllamaCall {
  const call = classifyOllamaCall(route.method, route.pattern, body);
  if (call.kind === "management") return call;
  const problem = modelNameProblem(call.model);
  // Ollama's own words for a missing model (routes.go); a bad name was caught by checkModelFields.
  if (problem !== undefined) throw new GatewayError(400, problem);
  return call;
}

/** The path sent to Ollama: the route's own, with its parameter checked (never a raw client path). */
function pathFor(route: OllamaRoute, params: Record<string, string>): string {
  if (route.pattern === "/api/blobs/:digest") {
    const digest = decoded(params.digest ?? "");
    // Ollama's own check (manifest.BlobsPath), done here so `..`, `/` or `%2e%2e%2f` never reach it.
    if (digest === undefined || !isBlobDigest(digest)) throw new GatewayError(400, "invalid digest format");
    return `/api/blobs/${digest}`;
  }
  if (route.pattern === "/v1/models/:model") {
    const raw = params.model ?? "";
    const model = decoded(raw);
    const problem = model === undefined ? "invalid model name" : modelNameProblem(model);
    if (problem !== undefined) throw new GatewayError(400, problem);
    return `/v1/models/${raw}`;
  }
  return route.pattern;
}

function decoded(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/** API_KEY, checked as on every other route (src/server/auth.ts), answered in Ollama's shape. */
async function authorize(auth: ReturnType<typeof apiKeyAuth>, c: Context<AppEnv>): Promise<void> {
  try {
    await auth(c, async () => undefined);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      throw new GatewayError(401, err.message, { "WWW-Authenticate": 'Bearer realm="diffugen"' });
    }
    throw err;
  }
}

function acquireRefusal(err: unknown): { status: number; outcome: string; error: GatewayError } {
  if (err instanceof QueueFullError) {
    return { status: 429, outcome: "queue_full", error: new GatewayError(429, err.message, { "Retry-After": String(Math.max(1, Math.ceil(err.retryAfterSeconds))) }) };
  }
  if (err instanceof SchedulerClosedError) {
    return { status: 503, outcome: "shutting_down", error: new GatewayError(503, "DiffuGen is shutting down", { "Retry-After": "5" }) };
  }
  if (err instanceof AcquireAbortedError) return { status: 499, outcome: "client_gone_waiting", error: clientGoneError() };
  throw err;
}

/** Nobody reads it: the client has gone. */
function clientGoneError(): GatewayError {
  return new GatewayError(499, "the client closed the request");
}

function unreachable(baseUrl: string, err: unknown): GatewayError {
  const cause = err instanceof Error ? (((err as { code?: string }).code ?? "") + " " + err.message).trim() : String(err);
  return new GatewayError(502, `Ollama is not reachable at ${baseUrl} (OLLAMA_BASE_URL): ${cause}`);
}

function relay(upstream: Response, body: ReadableStream<Uint8Array> | null): Response {
  return new Response(body, { status: upstream.status, statusText: upstream.statusText, headers: upstream.headers });
}

/** A path quoted in an error: bounded, control characters escaped. */
function shown(path: string): string {
  // eslint-disable-next-line no-control-regex
  return path.slice(0, 200).replace(/[\u0000-\u001f\u007f]/g, "?");
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
