/**
 * Ollama's OpenAI-compatible API on the fake Ollama (REFERENCE.md §2; ollama/ollama
 * `middleware/openai.go`, `openai/openai.go`):
 *
 *   POST /v1/chat/completions   `chat.completion.chunk` SSE ending `data: [DONE]`, or one
 *                               `chat.completion` with stream false (the default)
 *   POST /v1/completions        `text_completion` chunks / object, the same way
 *   POST /v1/embeddings         `{"object":"list","data":[{"object":"embedding",...}]}`
 *   GET  /v1/models             /api/tags as `{"object":"list","data":[{id,object,created,owned_by}]}`
 *   GET  /v1/models/{model}     /api/show as one model
 *
 * Like Ollama's middleware, each route rewrites the request into the native one and runs it
 * through the fake's own /api handler (over HTTP, on the fake's own port), then rewrites the
 * answer. So a /v1 call loads its model into the simulated GPU exactly as /api/chat does: the
 * same VRAM checks and violations, faults, delays and counts (`stats.chat`, `stats.generate`;
 * an embedding loads its model as a `load`). Errors are Ollama's OpenAI shape
 * `{"error":{"message","type","param":null,"code":null}}` with the native status (type
 * `invalid_request_error` for 400, `not_found_error` for 404, `api_error` otherwise).
 */
import type http from "node:http";

const chatPath = "/v1/chat/completions";
const completionsPath = "/v1/completions";
const embeddingsPath = "/v1/embeddings";
const modelsPath = "/v1/models";

export function isOpenAiRoute(method: string, path: string): boolean {
  if (method === "POST") return path === chatPath || path === completionsPath || path === embeddingsPath;
  return method === "GET" && (path === modelsPath || path.startsWith(`${modelsPath}/`));
}

export interface OpenAiCall {
  method: string;
  path: string;
  /** The request body as received ("" for GET). */
  raw: string;
  /** Where the fake's native API answers (its own URL). */
  ollamaUrl: string;
}

type Json = Record<string, unknown>;

class OpenAiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function serveOpenAiRoute(res: http.ServerResponse, call: OpenAiCall): Promise<void> {
  // The native call ends when our client hangs up, as Ollama's handler stops with its request.
  const native = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) native.abort();
  });
  try {
    if (call.method !== "POST") return await serveModels(res, call, native.signal);
    const body = parseBody(call.raw);
    if (call.path === chatPath) return await serveChat(res, call, body, native.signal);
    if (call.path === completionsPath) return await serveCompletion(res, call, body, native.signal);
    return await serveEmbeddings(res, call, body, native.signal);
  } catch (err) {
    if (err instanceof OpenAiError) return sendError(res, err.status, err.message);
    // The native call failed half-way (its connection was reset, the fake went down): so does ours.
    res.destroy();
  }
}

// ---------------------------------------------------------------- routes

async function serveChat(res: http.ServerResponse, call: OpenAiCall, body: Json, signal: AbortSignal): Promise<void> {
  if (!Array.isArray(body.messages) || body.messages.length === 0) throw new OpenAiError(400, "[] is too short - 'messages'");
  const stream = body.stream === true;
  const nativeBody = {
    model: body.model,
    messages: body.messages.map(nativeMessage),
    stream,
    ...optionsOf(body),
  };
  const answer = await callNative(call.ollamaUrl, "/api/chat", nativeBody, signal);
  if (answer.status !== 200) return relayNativeError(res, answer);

  const id = `chatcmpl-${Math.floor(Math.random() * 999)}`;
  const created = Math.floor(Date.now() / 1000);
  const includeUsage = isRecord(body.stream_options) && body.stream_options.include_usage === true;
  const chunkOf = (line: Json) => {
    const message = isRecord(line.message) ? line.message : {};
    const delta: Json = { role: "assistant", content: message.content ?? "" };
    if (typeof message.thinking === "string" && message.thinking !== "") delta.reasoning = message.thinking;
    return { id, object: "chat.completion.chunk", created, model: line.model, system_fingerprint: "fp_ollama", choices: [{ index: 0, delta, finish_reason: finishReason(line) }] };
  };
  if (!stream) {
    const line = (await answer.json()) as Json;
    const message = isRecord(line.message) ? line.message : {};
    const reply: Json = { role: message.role ?? "assistant", content: message.content ?? "" };
    if (typeof message.thinking === "string" && message.thinking !== "") reply.reasoning = message.thinking;
    return sendJson(res, 200, { id, object: "chat.completion", created, model: line.model, system_fingerprint: "fp_ollama", choices: [{ index: 0, message: reply, finish_reason: finishReason(line) }], usage: usageOf(line) });
  }
  await relayNativeStream(res, answer, (line) => {
    const chunk = chunkOf(line);
    const out = [chunk];
    if (line.done === true && includeUsage) out.push({ ...chunk, choices: [], usage: usageOf(line) } as typeof chunk);
    return out;
  });
}

async function serveCompletion(res: http.ServerResponse, call: OpenAiCall, body: Json, signal: AbortSignal): Promise<void> {
  if (body.prompt !== undefined && typeof body.prompt !== "string") {
    throw new OpenAiError(400, "json: cannot unmarshal array into Go struct field CompletionRequest.prompt of type string");
  }
  const stream = body.stream === true;
  const nativeBody = {
    model: body.model,
    prompt: body.prompt ?? "",
    stream,
    ...(typeof body.suffix === "string" ? { suffix: body.suffix } : {}),
    ...optionsOf(body),
  };
  const answer = await callNative(call.ollamaUrl, "/api/generate", nativeBody, signal);
  if (answer.status !== 200) return relayNativeError(res, answer);

  const id = `cmpl-${Math.floor(Math.random() * 999)}`;
  const created = Math.floor(Date.now() / 1000);
  const includeUsage = isRecord(body.stream_options) && body.stream_options.include_usage === true;
  const completionOf = (line: Json) => ({
    id,
    object: "text_completion",
    created,
    model: line.model,
    system_fingerprint: "fp_ollama",
    choices: [{ text: line.response ?? "", index: 0, finish_reason: finishReason(line) }],
  });
  if (!stream) {
    const line = (await answer.json()) as Json;
    return sendJson(res, 200, { ...completionOf(line), usage: usageOf(line) });
  }
  await relayNativeStream(res, answer, (line) => {
    const chunk = { ...completionOf(line), ...(includeUsage ? { usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 } } : {}) };
    return line.done === true && includeUsage ? [chunk, { ...chunk, choices: [], usage: usageOf(line) }] : [chunk];
  });
}

async function serveEmbeddings(res: http.ServerResponse, call: OpenAiCall, body: Json, signal: AbortSignal): Promise<void> {
  const input = body.input === "" ? [""] : body.input;
  const texts = typeof input === "string" ? [input] : Array.isArray(input) && input.length > 0 && input.every((t) => typeof t === "string") ? (input as string[]) : undefined;
  if (texts === undefined) throw new OpenAiError(400, "invalid input");
  const format = typeof body.encoding_format === "string" ? body.encoding_format.toLowerCase() : "";
  if (format !== "" && format !== "float" && format !== "base64") {
    throw new OpenAiError(400, `Invalid value for 'encoding_format' = ${String(body.encoding_format)}. Supported values: ['float', 'base64'].`);
  }
  // Loading the model is what an embedding does to the GPU: the native load request does it
  // (empty messages), with its checks; the vectors are then made up from the text.
  const answer = await callNative(call.ollamaUrl, "/api/chat", { model: body.model, messages: [] }, signal);
  if (answer.status !== 200) return relayNativeError(res, answer);
  await answer.arrayBuffer();
  const promptTokens = texts.reduce((n, text) => n + Math.max(1, Math.ceil(text.length / 4)), 0);
  sendJson(res, 200, {
    object: "list",
    // The official SDK asks for base64 (little-endian float32s) and decodes it.
    data: texts.map((text, index) => ({ object: "embedding", embedding: format === "base64" ? base64Of(embeddingOf(text)) : embeddingOf(text), index })),
    model: body.model,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  });
}

async function serveModels(res: http.ServerResponse, call: OpenAiCall, signal: AbortSignal): Promise<void> {
  if (call.path === modelsPath) {
    const tags = await fetch(new URL("/api/tags", call.ollamaUrl), { signal });
    if (tags.status !== 200) return relayNativeError(res, tags);
    const { models } = (await tags.json()) as { models: { name: string; modified_at: string }[] };
    return sendJson(res, 200, {
      object: "list",
      data: models.map((m) => ({ id: m.name, object: "model", created: unixOf(m.modified_at), owned_by: namespaceOf(m.name) })),
    });
  }
  const model = decodeURIComponent(call.path.slice(modelsPath.length + 1));
  const shown = await callNative(call.ollamaUrl, "/api/show", { model }, signal);
  if (shown.status !== 200) return relayNativeError(res, shown);
  const show = (await shown.json()) as Json;
  sendJson(res, 200, { id: model, object: "model", created: unixOf(show.modified_at), owned_by: namespaceOf(model) });
}

// ---------------------------------------------------------------- the native call

function callNative(ollamaUrl: string, path: string, body: unknown, signal: AbortSignal): Promise<Response> {
  return fetch(new URL(path, ollamaUrl), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal });
}

/** NDJSON lines in, SSE chunks out, each passed on as it comes; `data: [DONE]` after the `done` line. */
async function relayNativeStream(res: http.ServerResponse, answer: Response, chunksOf: (line: Json) => unknown[]): Promise<void> {
  res.writeHead(200, { "Content-Type": "text/event-stream", Date: new Date().toUTCString() });
  const write = (text: string) => new Promise<void>((resolve) => res.write(text, () => resolve()));
  const reader = answer.body!.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const text = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (text === "") continue;
      const line = JSON.parse(text) as Json;
      if (typeof line.error === "string") {
        // An error mid-stream (a crashed runner): one error event, and the stream ends.
        await write(`data: ${JSON.stringify(errorBody(500, line.error))}\n\n`);
        res.end();
        return;
      }
      for (const chunk of chunksOf(line)) await write(`data: ${JSON.stringify(chunk)}\n\n`);
      if (line.done === true) {
        await write("data: [DONE]\n\n");
        res.end();
        return;
      }
    }
  }
  res.end();
}

/** The native `{"error": "..."}` with its status, in OpenAI's shape (middleware writeError). */
async function relayNativeError(res: http.ServerResponse, answer: Response): Promise<void> {
  const text = await answer.text();
  let message = text;
  try {
    const parsed = JSON.parse(text) as Json;
    if (typeof parsed.error === "string") message = parsed.error;
  } catch {
    // Not JSON (the native 404 page): the raw text is the message, as Ollama does.
  }
  sendError(res, answer.status, message);
}

// ---------------------------------------------------------------- shapes

function parseBody(raw: string): Json {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new OpenAiError(400, raw.trim() === "" ? "EOF" : `invalid character in request body: ${(err as Error).message}`);
  }
  if (!isRecord(parsed)) throw new OpenAiError(400, "json: cannot unmarshal into Go value of type openai.Request");
  return parsed;
}

/** An OpenAI message as Ollama's: text parts joined (images are not simulated). */
function nativeMessage(message: unknown): Json {
  if (!isRecord(message)) throw new OpenAiError(400, "invalid message format");
  const content = message.content;
  let text = "";
  if (typeof content === "string") text = content;
  else if (Array.isArray(content)) text = content.filter((p) => isRecord(p) && p.type === "text" && typeof p.text === "string").map((p) => (p as Json).text).join("\n");
  else if (content !== undefined && content !== null) throw new OpenAiError(400, `invalid message content type: ${typeof content}`);
  return { role: message.role, content: text };
}

/** The sampling fields Ollama maps into `options` (FromChatRequest / FromCompleteRequest). */
function optionsOf(body: Json): { options?: Json } {
  const options: Json = {};
  if (typeof body.max_tokens === "number") options.num_predict = body.max_tokens;
  if (typeof body.temperature === "number") options.temperature = body.temperature;
  if (typeof body.top_p === "number") options.top_p = body.top_p;
  if (typeof body.seed === "number") options.seed = body.seed;
  if (typeof body.stop === "string") options.stop = [body.stop];
  else if (Array.isArray(body.stop)) options.stop = body.stop;
  return Object.keys(options).length > 0 ? { options } : {};
}

function finishReason(line: Json): string | null {
  return typeof line.done_reason === "string" && line.done_reason !== "" ? line.done_reason : null;
}

function usageOf(line: Json) {
  const prompt = typeof line.prompt_eval_count === "number" ? line.prompt_eval_count : 0;
  const completion = typeof line.eval_count === "number" ? line.eval_count : 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function errorBody(status: number, message: string) {
  const type = status === 400 ? "invalid_request_error" : status === 404 ? "not_found_error" : "api_error";
  return { error: { message, type, param: null, code: null } };
}

/** A deterministic unit vector from the text (same text, same vector). */
function embeddingOf(text: string): number[] {
  const values: number[] = [];
  let h = 2166136261;
  for (let i = 0; i < 8; i++) {
    for (const ch of `${i}:${text}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
    values.push((h / 2 ** 32) * 2 - 1);
  }
  const norm = Math.hypot(...values) || 1;
  return values.map((v) => v / norm);
}

function base64Of(values: number[]): string {
  return Buffer.from(new Float32Array(values).buffer).toString("base64");
}

/** model.ParseName(name).Namespace: `library` unless the name says otherwise. */
function namespaceOf(name: string): string {
  const parts = name.split("/");
  return parts.length >= 2 ? parts[parts.length - 2]! : "library";
}

function unixOf(value: unknown): number {
  const ms = typeof value === "string" ? Date.parse(value) : NaN;
  return Number.isNaN(ms) ? 0 : Math.floor(ms / 1000);
}

function isRecord(value: unknown): value is Json {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Go's json.Encoder ends the object with a newline; gin sets the type without a charset. */
function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text), Date: new Date().toUTCString() });
  res.end(text);
}

function sendError(res: http.ServerResponse, status: number, message: string): void {
  if (res.headersSent) return void res.end();
  sendJson(res, status, errorBody(status, message));
}
