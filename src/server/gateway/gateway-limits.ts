/**
 * The gateway's share of the per-client limits: which calls answer with a stream (they take
 * a stream slot, MAX_STREAMS_PER_CLIENT) and which are model uploads (MAX_MODEL_UPLOAD_GB
 * instead of MAX_BODY_MB, and BODY_TIMEOUT_S as a pause rather than a deadline).
 */
import { matchOllamaRoute } from "./ollama-routes.js";

/**
 * Ollama's native routes that stream NDJSON unless the body says `"stream": false`
 * (api/types.go: Stream *bool, nil = true).
 */
const streamsByDefault = new Set(["/api/chat", "/api/generate", "/api/pull", "/api/push", "/api/create"]);

/** Ollama's OpenAI- and Anthropic-compatible routes stream (SSE) only with `"stream": true`. */
const streamsWhenAsked = new Set(["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"]);

/** Whether Ollama answers this call (route pattern, JSON body) with a stream. */
export function streamsAnswer(pattern: string, body: Readonly<Record<string, unknown>>): boolean {
  if (streamsByDefault.has(pattern)) return body.stream !== false;
  if (streamsWhenAsked.has(pattern)) return body.stream === true;
  return false;
}

/** The uploads of a model's bytes (and the call that assembles them), as large as a model. */
export const modelUploadRoutes: ReadonlySet<string> = new Set(["/api/blobs/:digest", "/api/create"]);

/** Whether `method` on Ollama's path `ollamaPath` is a model upload. */
export function isModelUpload(method: string, ollamaPath: string): boolean {
  const match = matchOllamaRoute(method, ollamaPath);
  return match.kind === "route" && modelUploadRoutes.has(match.route.pattern);
}
