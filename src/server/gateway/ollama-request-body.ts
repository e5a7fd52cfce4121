/**
 * Reading and checking the body of a call before it goes to Ollama: whole and within the
 * body limit (413 past it, counted as it arrives, whatever Content-Length said), a JSON
 * object where Ollama expects one (400 otherwise, as Ollama words it where it has words),
 * and every field that names a model, a file or a blob well-formed (400), so that nothing
 * Ollama would refuse, or should, reaches it.
 */
import { z } from "zod";
import { GatewayError } from "./ollama-errors.js";
import { isBlobDigest, modelNameProblem } from "./ollama-calls.js";

/** The setting a body limit comes from, named in the 413. */
export type BodyLimitName = "MAX_BODY_MB" | "MAX_MODEL_UPLOAD_GB";

/** The body's bytes, read whole; 413 once more than `maxBytes` arrived (or were announced). */
export async function readBodyWithin(request: Request, maxBytes: number, limitName: BodyLimitName = "MAX_BODY_MB"): Promise<Uint8Array> {
  refuseDeclaredOver(request, maxBytes, limitName);
  if (request.body === null) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge(maxBytes, limitName);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

/** 413 at once when Content-Length already says the body is too large. */
function refuseDeclaredOver(request: Request, maxBytes: number, limitName: BodyLimitName): void {
  const declared = Number(request.headers.get("content-length") ?? Number.NaN);
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge(maxBytes, limitName);
}

/**
 * A body streamed through as it arrives (a blob upload: never buffered), counted: it errors
 * with the 413 once more than `maxBytes` have passed, which ends the upload to Ollama too.
 */
export function streamWithin(request: Request, maxBytes: number, limitName: BodyLimitName): ReadableStream<Uint8Array> | null {
  refuseDeclaredOver(request, maxBytes, limitName);
  const body = request.body;
  if (body === null) return null;
  let size = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        size += chunk.byteLength;
        if (size > maxBytes) controller.error(tooLarge(maxBytes, limitName));
        else controller.enqueue(chunk);
      },
    }),
  );
}

function tooLarge(maxBytes: number, limitName: BodyLimitName): GatewayError {
  const gb = maxBytes / 1024 ** 3;
  const mb = maxBytes / (1024 * 1024);
  const shown = gb >= 1 ? `${Math.round(gb * 10) / 10} GB` : mb >= 1 ? `${Math.round(mb * 10) / 10} MB` : `${Math.round(maxBytes / 1024)} KB`;
  return new GatewayError(413, `request body is larger than ${shown} (${limitName})`);
}

/** Content codings the gateway cannot look inside: the body is refused rather than forwarded unchecked. */
export function refuseEncodedBody(request: Request): void {
  const coding = request.headers.get("content-encoding")?.trim().toLowerCase();
  if (coding !== undefined && coding !== "" && coding !== "identity") {
    throw new GatewayError(415, `Content-Encoding '${coding.slice(0, 40)}' is not supported here: send the body uncompressed`);
  }
}

/** The body as a JSON object: Ollama's "missing request body" when empty, 400 when not an object. */
export function parseJsonObject(bytes: Uint8Array): Record<string, unknown> {
  const text = new TextDecoder().decode(bytes);
  if (text.trim() === "") throw new GatewayError(400, "missing request body");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new GatewayError(400, `invalid JSON in request body: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new GatewayError(400, `request body must be a JSON object, not ${parsed === null ? "null" : Array.isArray(parsed) ? "an array" : typeof parsed}`);
  }
  return parsed as Record<string, unknown>;
}

/** A model reference (null counts as absent, as in Go). */
const modelRef = z
  .string({ error: "must be a string" })
  .nullish()
  .superRefine((name, check) => {
    if (name === null || name === undefined || name.trim() === "") return;
    const problem = modelNameProblem(name);
    if (problem !== undefined) check.addIssue({ code: "custom", message: problem });
  });

/**
 * A file name in /api/create's `files`, `draft_files`: relative, slash-separated, no `.`,
 * `..` or empty elements (Go's fs.ValidPath, which Ollama applies), no backslash or NUL.
 */
const relativeFile = z.string().refine((name) => name !== "" && !/[\\\0]/.test(name) && name.split("/").every((part) => part !== "" && part !== "." && part !== ".."), {
  error: (issue) => `file name ${JSON.stringify(String(issue.input).slice(0, 100))} is not a relative path inside the model`,
});
const blobDigest = z.string().refine(isBlobDigest, { error: "invalid digest format" });
const fileDigests = z.record(relativeFile, blobDigest, { error: "must be an object of file names to blob digests" }).nullish();

/** Every field of a native call's body that names a model, a file or a blob. */
const nativeBody = z.looseObject({
  model: modelRef,
  name: modelRef,
  source: modelRef,
  destination: modelRef,
  from: modelRef,
  files: fileDigests,
  draft_files: fileDigests,
  adapters: fileDigests,
});

/** The OpenAI- and Anthropic-compatible bodies name their model in `model` only. */
const compatibleBody = z.looseObject({ model: modelRef });

/** Checks a JSON body's model fields for its route (`/api/...` or `/v1/...`); 400 naming the first bad field. */
export function checkModelFields(ollamaPath: string, body: Record<string, unknown>): void {
  const schema = ollamaPath.startsWith("/v1/") ? compatibleBody : nativeBody;
  const parsed = schema.safeParse(body);
  if (parsed.success) return;
  const issue = parsed.error.issues[0]!;
  const field = issue.path.map(String).join(".");
  throw new GatewayError(400, field === "" ? issue.message : `${field}: ${issue.message}`);
}

/** The model a multipart call (an audio transcription) names in its `model` field. */
export async function multipartModel(bytes: Uint8Array, contentType: string | null): Promise<string> {
  if (contentType === null || !/^multipart\/form-data\s*;/i.test(contentType)) {
    throw new GatewayError(400, "request body must be multipart/form-data");
  }
  let form: FormData;
  try {
    form = await new Response(bytes, { headers: { "content-type": contentType } }).formData();
  } catch (err) {
    throw new GatewayError(400, `failed to parse multipart form: ${err instanceof Error ? err.message : String(err)}`);
  }
  const model = form.get("model");
  return typeof model === "string" ? model : "";
}
