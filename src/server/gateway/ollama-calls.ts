/**
 * What a call to Ollama's API can do to the GPU, decided from its route and body before
 * anything is forwarded:
 *
 * - `gated`: it can put a model in VRAM (chat, generate, embed, embeddings, and Ollama's
 *   OpenAI-, Anthropic-compatible and transcription routes, which all run a model). It
 *   holds an LLM lease from the GPU scheduler until its answer has been sent, so it never
 *   reaches Ollama while a diffusion job holds the GPU.
 * - `unload`: `keep_alive: 0` with nothing to answer (what `ollama stop` sends). It frees
 *   VRAM, so it goes at once.
 * - `management`: lists, shows, pulls, copies, deletes, blobs: nothing loads. Forwarded
 *   without a lease.
 */

export type OllamaCall =
  | { kind: "gated"; model: string }
  | { kind: "unload"; model: string }
  | { kind: "management" };

/**
 * Routes whose answer needs the model loaded (method POST): ollama/ollama server/routes.go,
 * GenerateRoutes. /v1/responses, /v1/messages and /v1/audio/transcriptions end in Ollama's
 * chat handler like /v1/chat/completions does.
 */
const gatedPaths = new Set([
  "/api/chat",
  "/api/generate",
  "/api/embed",
  "/api/embeddings",
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/embeddings",
  "/v1/responses",
  "/v1/messages",
  "/v1/audio/transcriptions",
]);

/** Whether a call on this route can load a model: its body must then be read and checked first. */
export function isGatedRoute(method: string, path: string): boolean {
  return method === "POST" && gatedPaths.has(path);
}

export function classifyOllamaCall(method: string, path: string, body: Readonly<Record<string, unknown>> | undefined): OllamaCall {
  if (!isGatedRoute(method, path)) return { kind: "management" };
  // A gated route whose body could not be read is still gated: the safe side.
  const model = typeof body?.model === "string" ? body.model : "";
  if (body !== undefined && (path === "/api/chat" || path === "/api/generate") && isUnloadRequest(body)) return { kind: "unload", model };
  return { kind: "gated", model };
}

/**
 * `keep_alive` 0 (a number or a duration such as "0", "0s", "0m") with no prompt and no
 * messages: Ollama then expires the runner without loading anything (routes.go, "expire the
 * runner if unload is requested"). Anything else that could load counts as gated.
 */
function isUnloadRequest(body: Readonly<Record<string, unknown>>): boolean {
  const keepAlive = body.keep_alive;
  const zero = keepAlive === 0 || (typeof keepAlive === "string" && /^\s*0+(\.0+)?\s*(ns|us|µs|ms|s|m|h)?\s*$/.test(keepAlive));
  if (!zero) return false;
  const messages = body.messages;
  const prompt = body.prompt;
  const noMessages = messages === undefined || messages === null || (Array.isArray(messages) && messages.length === 0);
  const noPrompt = prompt === undefined || prompt === null || prompt === "";
  return noMessages && noPrompt;
}

/**
 * Ollama's model names (types/model/name.go, ParseName; internal/modelref for the source
 * suffix): `[scheme://][host/][namespace/]model[:tag][:cloud|:local]`, surrounding spaces
 * trimmed. Host: 1-350 of letters, digits and `_-.:` (a port); namespace: 1-80 of letters,
 * digits and `_-`; model and tag: 1-80 of letters, digits and `_-.`; each part starts with
 * a letter, digit or `_`. Checked before forwarding, so that a name cannot walk out of
 * Ollama's manifest tree (`../`), carry control characters, or be absurdly long.
 */
const hostPart = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}$/;
const namespacePart = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,79}$/;
const modelPart = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$/;

export function modelNameProblem(raw: string): string | undefined {
  const name = raw.trim();
  if (name.length === 0) return "model is required";
  if (name.length > 600) return "model name is too long";
  return isValidModelName(name) ? undefined : `invalid model name '${printable(name.slice(0, 100))}'`;
}

function isValidModelName(name: string): boolean {
  let rest = name.replace(/:(cloud|local)$/i, "");
  rest = rest.replace(/^https?:\/\//i, "");
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  const parts = rest.split("/");
  if (parts.length > 3) return false;
  const [model, namespace, host] = parts.reverse();
  if (model === undefined || !modelPart.test(model)) return false;
  if (namespace !== undefined && !namespacePart.test(namespace)) return false;
  if (host !== undefined && !hostPart.test(host)) return false;
  return tag === undefined || modelPart.test(tag);
}

/** A name quoted in an error: control characters shown escaped, never echoed raw. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** The body fields that name a model, by route (`model`; `name` in older clients; copy's two; create's `from`). */
export const modelFields = ["model", "name", "source", "destination", "from"] as const;

/**
 * A blob digest as Ollama accepts it (manifest.BlobsPath): `sha256:<64 hex>` (`sha256-` is
 * the on-disk spelling). Nothing else: no path separators, no dots.
 */
export function isBlobDigest(digest: string): boolean {
  return /^sha256[:-][0-9a-fA-F]{64}$/.test(digest);
}
