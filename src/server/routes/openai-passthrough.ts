import { randomBytes, randomUUID } from "node:crypto";
import type { Context, Next } from "hono";
import { Hono } from "hono";
import { z } from "zod";
import { AcquireAbortedError, QueueFullError, SchedulerClosedError, type GpuLease } from "../../gpu/index.js";
import { ApiError, errorBody, invalidRequest } from "../errors.js";
import { statusChunk } from "../format/chat-completions.js";
import { observeGatedCall } from "../gateway/gateway-observer.js";
import { leaseBoundBody } from "../gateway/lease-bound-body.js";
import { modelNameProblem } from "../gateway/ollama-calls.js";
import { isDiffugenModel } from "../gateway/openai-model-routing.js";
import { describeGpuWait, describeGpuWaitOver } from "../gateway/openai-wait-status.js";
import { sseHeaders, waitingStream, Wakeup, type OpenAiErrorObject } from "../gateway/openai-wait-stream.js";
import { callOllama } from "../gateway/upstream.js";
import { parseWith } from "../http-input.js";
import { claimStream } from "../security/stream-slots.js";
import type { AppEnv, ServerContext } from "../server-context.js";

/**
 * OpenAI's API for every Ollama model: POST /v1/chat/completions, /v1/completions and
 * /v1/embeddings with a model that is not DiffuGen's go to Ollama's own OpenAI-compatible
 * API (`{OLLAMA_BASE_URL}/v1/...`), body and answer unchanged, under an LLM lease from the
 * GPU scheduler held from admission until the answer has been sent (or the client has gone).
 * So no call from any OpenAI client reaches Ollama while an image is being drawn.
 *
 * A chat for DiffuGen's own models (`diffugen`, `diffugen:<model>`, an image model name)
 * falls through to the chat route that draws (openai-chat.ts), which also answers every
 * chat body that names no model at all, as it did before.
 *
 * A streaming chat that has to wait for the GPU gets OpenWebUI status chunks meanwhile
 * (GATEWAY_WAIT_STATUS, default on); a call granted at once is relayed with Ollama's own
 * status and headers.
 */

export interface PassthroughOptions {
  /** Status chunks while a streaming chat waits for the GPU (GATEWAY_WAIT_STATUS). */
  waitStatus: boolean;
}

/** Redraws of the waiting line: often enough for a countdown, rare enough to stay small. */
const waitRefreshMs = 1_000;

const passthroughBody = z.looseObject({
  model: z.string({ error: "model is required" }).superRefine((model, check) => {
    const problem = modelNameProblem(model);
    if (problem !== undefined) check.addIssue({ code: "custom", message: problem });
  }),
  stream: z.boolean({ error: "stream must be true or false" }).nullish(),
});

type Route = "/chat/completions" | "/completions" | "/embeddings";

export function openaiPassthroughRoutes(ctx: ServerContext, options: PassthroughOptions) {
  const forward = (route: Route) => (c: Context<AppEnv>, next: Next) => passThrough(ctx, options, route, c, next);
  return new Hono<AppEnv>()
    .post("/chat/completions", forward("/chat/completions"))
    .post("/completions", forward("/completions"))
    .post("/embeddings", forward("/embeddings"));
}

async function passThrough(ctx: ServerContext, options: PassthroughOptions, route: Route, c: Context<AppEnv>, next: Next): Promise<Response | void> {
  // Read once: the chat route reads the same text again from Hono's cache if this falls through.
  const text = await c.req.text();
  const json = parseJson(text);
  if (route === "/chat/completions") {
    const model = isRecord(json) ? json.model : undefined;
    if (typeof model !== "string" || model.trim() === "" || isDiffugenModel(ctx.deps.registry, model)) return next();
  }
  if (json === notJson) {
    throw invalidRequest("We could not parse the JSON body of your request. Send valid JSON with 'Content-Type: application/json'.", null, "invalid_json");
  }
  const body = parseWith(passthroughBody, json);
  if (isDiffugenModel(ctx.deps.registry, body.model)) {
    throw invalidRequest(`'${body.model}' is one of DiffuGen's drawing models; /v1${route} needs an Ollama model`, "model", "model_not_supported");
  }

  // A streamed answer takes one of the client's stream slots before it queues for the GPU.
  if (body.stream === true) claimStream(c);
  const scheduler = ctx.deps.scheduler;
  const baseUrl = ctx.deps.config.llm.baseUrl;
  const jobId = `openai-${randomUUID()}`;
  // Gone: the client left (the request's signal), or the response stream was cancelled.
  const cancelled = new AbortController();
  const gone = AbortSignal.any([c.var.clientSignal, cancelled.signal]);
  const wakeup = new Wakeup();
  // The operator page hears of the call (GET /v1/events): admitted now, over when its lease goes back.
  const watch = observeGatedCall(ctx.gatewayCalls, { id: jobId, via: "openai", route: `/v1${route}`, model: body.model });
  const granted = scheduler.acquire("llm", { jobId, signal: gone, onEvent: () => wakeup.wake() }).then(
    (lease) => watch.lease(lease),
    (err: unknown) => {
      watch.end("refused", failureError(err, baseUrl).status);
      throw err;
    },
  );
  // acquire() decides at once: still in the queue now means this call has to wait.
  const waiting = scheduler.state().queue.some((job) => job.jobId === jobId);
  const upstreamPath = `/v1${route}${new URL(c.req.url).search}`;
  const call = (signal: AbortSignal) => callOllama(baseUrl, { method: "POST", path: upstreamPath, headers: c.req.raw.headers, body: text, signal });

  if (waiting && options.waitStatus && route === "/chat/completions" && body.stream === true) {
    const meta = { id: `chatcmpl-${randomBytes(12).toString("hex")}`, created: Math.floor(Date.now() / 1000), model: body.model };
    const stream = waitingStream({
      granted,
      wakeup,
      describe: () => describeGpuWait({ state: scheduler.state(), stats: scheduler.stats(), maxBatch: scheduler.maxBatch, jobId, now: Date.now() }),
      describeOver: describeGpuWaitOver,
      statusChunk: (description, done) => statusChunk(meta, description, done),
      call,
      failure: (err) => failureObject(err, baseUrl),
      clientGone: gone,
      onCancel: () => cancelled.abort(new Error("the client disconnected")),
      refreshMs: waitRefreshMs,
      heartbeatMs: ctx.options.heartbeatMs,
    });
    return new Response(stream, { status: 200, headers: sseHeaders });
  }

  let lease: GpuLease;
  try {
    lease = await granted;
  } catch (err) {
    throw failureError(err, baseUrl);
  }
  let upstream: Response;
  try {
    upstream = await call(gone);
  } catch (err) {
    const failure = failureError(err, baseUrl, gone.aborted);
    watch.end(gone.aborted ? "client_gone" : "ollama_unreachable", failure.status);
    await lease.release();
    throw failure;
  }
  watch.status = upstream.status;
  // Ollama's status, headers and body as they came; the lease goes back when the body has
  // been sent, or when the client goes (the server then cancels the body).
  return new Response(leaseBoundBody(upstream.body, lease, gone), { status: upstream.status, statusText: upstream.statusText, headers: upstream.headers });
}

/** A refused lease or an unreachable Ollama, as the API error a client acts on. */
function failureError(err: unknown, baseUrl: string, clientGone = false): ApiError {
  if (err instanceof QueueFullError) {
    return new ApiError(429, err.message, { type: "rate_limit_error", code: "queue_full", retryAfterSeconds: err.retryAfterSeconds, retryable: true });
  }
  if (err instanceof SchedulerClosedError) {
    return new ApiError(503, "The server is shutting down", { type: "server_error", code: "shutting_down", retryAfterSeconds: 5, retryable: true });
  }
  if (err instanceof AcquireAbortedError || clientGone) {
    // Nobody reads this: the client has gone.
    return new ApiError(499, "The client closed the request", { type: "invalid_request_error", code: "cancelled", retryable: false });
  }
  if (err instanceof ApiError) return err;
  const cause = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
  return new ApiError(502, `Ollama is not reachable at ${baseUrl}: ${cause}`, { type: "server_error", code: "ollama_unreachable" });
}

function failureObject(err: unknown, baseUrl: string): OpenAiErrorObject {
  return (errorBody(failureError(err, baseUrl), "openai") as { error: OpenAiErrorObject }).error;
}

const notJson = Symbol("not JSON");

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return notJson;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
