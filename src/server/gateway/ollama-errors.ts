/**
 * The gateway's own refusals, in the shape the caller's client parses, which is the one
 * Ollama itself uses on that route:
 *
 * - native routes (`/api/...`, `/`): `{"error": "<message>"}` (gin.H{"error": ...});
 * - OpenAI-compatible routes (`/v1/...`): `{"error": {"message", "type", "param", "code"}}`
 *   with type `invalid_request_error` (400), `not_found_error` (404) or `api_error`
 *   (openai/openai.go, NewError);
 * - Anthropic-compatible `/v1/messages`: `{"type": "error", "error": {"type", "message"}}`
 *   (anthropic/anthropic.go, NewError).
 */

export class GatewayError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = "GatewayError";
  }
}

type Shape = "native" | "openai" | "anthropic";

function shapeFor(ollamaPath: string): Shape {
  if (ollamaPath === "/v1/messages") return "anthropic";
  return ollamaPath === "/v1" || ollamaPath.startsWith("/v1/") ? "openai" : "native";
}

function openAiType(status: number): string {
  if (status === 400) return "invalid_request_error";
  if (status === 404) return "not_found_error";
  return "api_error";
}

function anthropicType(status: number): string {
  const types: Record<number, string> = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
  };
  return types[status] ?? "api_error";
}

export function gatewayErrorBody(ollamaPath: string, status: number, message: string): Record<string, unknown> {
  switch (shapeFor(ollamaPath)) {
    case "openai":
      return { error: { message, type: openAiType(status), param: null, code: null } };
    case "anthropic":
      return { type: "error", error: { type: anthropicType(status), message } };
    default:
      return { error: message };
  }
}

export function gatewayErrorResponse(ollamaPath: string, err: GatewayError): Response {
  return new Response(JSON.stringify(gatewayErrorBody(ollamaPath, err.status, err.message)), {
    status: err.status,
    headers: { "Content-Type": "application/json; charset=utf-8", ...err.headers },
  });
}
