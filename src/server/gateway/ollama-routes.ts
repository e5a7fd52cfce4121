/**
 * Ollama's route table (ollama/ollama server/routes.go, GenerateRoutes), the only calls the
 * gateway forwards: anything else is answered 404 (or 405 on a known path) here and never
 * reaches Ollama. `body` says how a call's body is read before it is forwarded:
 *
 * - `none`: no body (GET, HEAD);
 * - `json`: a JSON object, read whole within the body limit, its model fields checked;
 * - `raw`: read whole within the limit and forwarded unchecked (account and web-search
 *   calls, which name no model);
 * - `multipart`: a form (an audio transcription), read whole within the limit, its `model` checked;
 * - `stream`: streamed through as it arrives, never buffered, no limit (a blob upload).
 */

export type BodyKind = "none" | "json" | "raw" | "multipart" | "stream";

export interface OllamaRoute {
  method: "GET" | "HEAD" | "POST" | "DELETE";
  /** Ollama's pattern: `/api/blobs/:digest`. A `:param` is one path segment. */
  pattern: string;
  body: BodyKind;
}

const route = (method: OllamaRoute["method"], pattern: string, body: BodyKind = method === "GET" || method === "HEAD" ? "none" : "json"): OllamaRoute => ({
  method,
  pattern,
  body,
});

export const ollamaRoutes: readonly OllamaRoute[] = [
  route("GET", "/"),
  route("HEAD", "/"),
  route("GET", "/api/version"),
  route("HEAD", "/api/version"),
  route("GET", "/api/status"),
  route("POST", "/api/pull"),
  route("POST", "/api/push"),
  route("GET", "/api/tags"),
  route("HEAD", "/api/tags"),
  route("POST", "/api/show"),
  route("DELETE", "/api/delete"),
  route("POST", "/api/me", "raw"),
  route("POST", "/api/signout", "raw"),
  route("POST", "/api/create"),
  route("POST", "/api/blobs/:digest", "stream"),
  route("HEAD", "/api/blobs/:digest"),
  route("POST", "/api/copy"),
  route("POST", "/api/experimental/web_search", "raw"),
  route("POST", "/api/experimental/web_fetch", "raw"),
  route("GET", "/api/experimental/model-recommendations"),
  route("GET", "/api/ps"),
  route("POST", "/api/generate"),
  route("POST", "/api/chat"),
  route("POST", "/api/embed"),
  route("POST", "/api/embeddings"),
  route("POST", "/v1/chat/completions"),
  route("POST", "/v1/completions"),
  route("POST", "/v1/embeddings"),
  route("GET", "/v1/models"),
  route("GET", "/v1/models/:model"),
  route("POST", "/v1/responses"),
  route("POST", "/v1/audio/transcriptions", "multipart"),
  route("POST", "/v1/messages"),
];

export type RouteMatch =
  | { kind: "route"; route: OllamaRoute; params: Record<string, string> }
  /** The path is Ollama's, the method is not: 405 with Allow. */
  | { kind: "method_not_allowed"; allowed: string[] }
  | { kind: "unknown" };

/**
 * Finds the route for `path` (Ollama's path, raw as sent: percent-escapes undecoded, one
 * trailing slash ignored). Parameters come back undecoded: the caller decodes and checks them.
 */
export function matchOllamaRoute(method: string, path: string): RouteMatch {
  const segments = splitPath(path);
  const allowed: string[] = [];
  for (const [i, candidate] of ollamaRoutes.entries()) {
    const params = matchPattern(patternParts[i]!, segments);
    if (params === undefined) continue;
    if (candidate.method === method) return { kind: "route", route: candidate, params };
    allowed.push(candidate.method);
  }
  return allowed.length > 0 ? { kind: "method_not_allowed", allowed } : { kind: "unknown" };
}

/** Each route's pattern, split once. */
const patternParts: readonly (readonly string[])[] = ollamaRoutes.map((r) => splitPath(r.pattern));

/** `/api/tags/` → ["api", "tags"]; `/` → []. */
function splitPath(path: string): string[] {
  const trimmed = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
  return trimmed === "/" || trimmed === "" ? [] : trimmed.slice(1).split("/");
}

function matchPattern(parts: readonly string[], segments: readonly string[]): Record<string, string> | undefined {
  if (parts.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (const [i, part] of parts.entries()) {
    const segment = segments[i]!;
    if (part.startsWith(":")) {
      if (segment === "") return undefined;
      params[part.slice(1)] = segment;
    } else if (part !== segment) {
      return undefined;
    }
  }
  return params;
}
