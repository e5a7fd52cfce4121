/**
 * The rest of Ollama's native API on the fake Ollama (REFERENCE.md §2; ollama/ollama
 * `server/routes.go` and `server/create.go`), answering as Ollama does:
 *
 *   POST   /api/embed              `{"model","embeddings":[[...]],"total_duration",...}`
 *   POST   /api/embeddings         `{"embedding":[...]}` (the older API)
 *   POST   /api/pull               NDJSON progress ending `{"status":"success"}` (one object with stream:false)
 *   POST   /api/push               the same, for an installed model
 *   POST   /api/create             the same; from an installed model or uploaded blobs
 *   POST   /api/copy               200, empty body
 *   DELETE /api/delete             200, empty body
 *   HEAD   /api/blobs/:digest      200 if the blob is here, 404 otherwise
 *   POST   /api/blobs/:digest      201 once the upload's sha256 matches (hashed as it streams, never buffered)
 *
 * An embedding LOADS its model, like a chat: it does so through the fake's own load call
 * (`/api/chat` with no messages, over HTTP on the fake's own port), so the simulated GPU's
 * checks and violations, the VRAM listing and `stats.load` apply to it as to a chat.
 * Pulls, copies and creates add to the installed models /api/tags lists; deletes remove.
 * Errors are `{"error": "..."}` with Ollama's words and status.
 */
import { createHash } from "node:crypto";
import type http from "node:http";
import type { InstalledModel } from "../ollama-server.js";
import { parseKeepAlive } from "./keep-alive.js";

type Installed = Map<string, Required<Pick<InstalledModel, "size" | "sizeVram" | "thinking">> & InstalledModel>;
type Json = Record<string, unknown>;

export interface NativeCall {
  method: string;
  path: string;
  /** Where the fake's own API answers (for the load an embedding does). */
  ollamaUrl: string;
  /** Adds the request to the fake's record (`requests`, as kind `other`). */
  record(method: string, path: string, body: Json | undefined): void;
}

const jsonRoutes: Record<string, string> = {
  "/api/embed": "POST",
  "/api/embeddings": "POST",
  "/api/pull": "POST",
  "/api/push": "POST",
  "/api/create": "POST",
  "/api/copy": "POST",
  "/api/delete": "DELETE",
};
const blobPrefix = "/api/blobs/";

export function isNativeRoute(method: string, path: string): boolean {
  if (path.startsWith(blobPrefix)) return method === "HEAD" || method === "POST";
  return jsonRoutes[path] === method;
}

class OllamaError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The native routes of one fake Ollama: its installed models (shared with the fake) and its blobs. */
export class NativeRoutes {
  /** Blobs uploaded, by digest (`sha256:...`), with their size. */
  readonly blobs = new Map<string, number>();

  constructor(private readonly installed: Installed) {}

  async serve(req: http.IncomingMessage, res: http.ServerResponse, call: NativeCall): Promise<void> {
    try {
      if (call.path.startsWith(blobPrefix)) return await this.serveBlob(req, res, call);
      const body = parseBody(await readText(req));
      call.record(call.method, call.path, body);
      switch (call.path) {
        case "/api/embed":
          return await this.embed(res, call, body);
        case "/api/embeddings":
          return await this.embeddings(res, call, body);
        case "/api/pull":
          return this.pull(res, body);
        case "/api/push":
          return this.push(res, body);
        case "/api/create":
          return this.create(res, body);
        case "/api/copy":
          return this.copy(res, body);
        default:
          return this.delete(res, body);
      }
    } catch (err) {
      if (err instanceof OllamaError) return sendJson(res, err.status, { error: err.message });
      // The load an embedding needed failed half-way (the fake went down): so does this call.
      res.destroy();
    }
  }

  // ---------------------------------------------------------------- embeddings

  private async embed(res: http.ServerResponse, call: NativeCall, body: Json): Promise<void> {
    const started = process.hrtime.bigint();
    const model = typeof body.model === "string" ? body.model : "";
    if (model.trim() === "") throw new OllamaError(404, "model '' not found");
    const input = body.input;
    const texts = typeof input === "string" ? (input === "" ? [] : [input]) : input === undefined || input === null ? [] : Array.isArray(input) && input.every((t) => typeof t === "string") ? (input as string[]) : undefined;
    if (texts === undefined) throw new OllamaError(400, "invalid input type");
    this.requireInstalled(model);
    const loadNs = await this.load(call, model, body, res);
    if (loadNs === undefined) return;
    if (texts.length === 0) return sendJson(res, 200, { model, embeddings: [] });
    sendJson(res, 200, {
      model,
      embeddings: texts.map(embeddingOf),
      total_duration: Number(process.hrtime.bigint() - started),
      load_duration: loadNs,
      prompt_eval_count: texts.reduce((n, t) => n + Math.max(1, Math.ceil(t.length / 4)), 0),
    });
  }

  private async embeddings(res: http.ServerResponse, call: NativeCall, body: Json): Promise<void> {
    const model = typeof body.model === "string" ? body.model : "";
    if (model.trim() === "") throw new OllamaError(400, "model is required");
    this.requireInstalled(model);
    if ((await this.load(call, model, body, res)) === undefined) return;
    const prompt = typeof body.prompt === "string" ? body.prompt : "";
    sendJson(res, 200, { embedding: prompt === "" ? [] : embeddingOf(prompt) });
  }

  /**
   * Loads `model` as Ollama's embed handler does before embedding (scheduleRunner), through
   * the fake's own load call; the nanoseconds it took, or undefined once the client has gone.
   * keep_alive 0 loads, then expires the runner after the answer, as in Ollama.
   */
  private async load(call: NativeCall, model: string, body: Json, res: http.ServerResponse): Promise<number | undefined> {
    let keepAliveMs: number;
    try {
      keepAliveMs = parseKeepAlive(body.keep_alive);
    } catch (err) {
      throw new OllamaError(400, (err as Error).message);
    }
    const gone = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) gone.abort();
    };
    res.on("close", onClose);
    const started = process.hrtime.bigint();
    try {
      const load = { model, messages: [], ...(keepAliveMs === 0 || body.keep_alive === undefined ? {} : { keep_alive: body.keep_alive }), ...(isRecord(body.options) ? { options: body.options } : {}) };
      const answer = await postJson(call.ollamaUrl, "/api/chat", load, gone.signal);
      if (answer.status !== 200) throw new OllamaError(answer.status, String(((await answer.json()) as Json).error ?? "load failed"));
      await answer.arrayBuffer();
      if (keepAliveMs === 0) res.once("finish", () => void postJson(call.ollamaUrl, "/api/chat", { model, messages: [], keep_alive: 0 }).then((r) => r.arrayBuffer(), () => undefined));
      return Number(process.hrtime.bigint() - started);
    } catch (err) {
      if (gone.signal.aborted) return undefined;
      throw err;
    } finally {
      res.off("close", onClose);
    }
  }

  // ---------------------------------------------------------------- model management

  private pull(res: http.ServerResponse, body: Json): void {
    const name = nameOf(body);
    if (!validName(name)) throw new OllamaError(400, "invalid model name");
    const progress: Json[] = [{ status: "pulling manifest" }];
    if (name.startsWith("missing")) {
      return sendProgress(res, body, [...progress, { error: "pull model manifest: file does not exist" }]);
    }
    const digest = digestOf(name);
    const size = 2_000_000_000;
    progress.push(
      { status: `pulling ${digest.slice(7, 19)}`, digest, total: size, completed: 0 },
      { status: `pulling ${digest.slice(7, 19)}`, digest, total: size, completed: size },
      { status: "verifying sha256 digest" },
      { status: "writing manifest" },
      { status: "success" },
    );
    this.install(name, size);
    sendProgress(res, body, progress);
  }

  private push(res: http.ServerResponse, body: Json): void {
    const name = nameOf(body);
    if (name === "") throw new OllamaError(400, "model is required");
    const model = this.installed.get(normalize(name));
    if (!model) return sendProgress(res, body, [{ error: `open manifests/${normalize(name).replace(":", "/")}: no such file or directory` }]);
    const digest = digestOf(model.name);
    sendProgress(res, body, [
      { status: "retrieving manifest" },
      { status: `pushing ${digest.slice(7, 19)}`, digest, total: model.size, completed: model.size },
      { status: "pushing manifest" },
      { status: "success" },
    ]);
  }

  private create(res: http.ServerResponse, body: Json): void {
    const name = nameOf(body);
    if (!validName(name)) throw new OllamaError(400, "invalid model name");
    const files = isRecord(body.files) ? body.files : {};
    for (const [file, digest] of Object.entries(files)) {
      if (!validFilePath(file)) throw new OllamaError(400, "file path must be relative");
      if (typeof digest !== "string" || digest === "") throw new OllamaError(400, "invalid digest format");
    }
    const from = typeof body.from === "string" ? body.from : "";
    if (from === "" && Object.keys(files).length === 0) throw new OllamaError(400, "neither 'from' or 'files' was specified");
    const progress: Json[] = [{ status: "gathering model components" }];
    let size = 0;
    if (from !== "") {
      const base = this.installed.get(normalize(from));
      if (!base) return sendProgress(res, body, [...progress, { error: `model '${from}' not found` }]);
      size += base.size;
      progress.push({ status: `using existing layer ${digestOf(base.name)}` });
    }
    for (const digest of Object.values(files) as string[]) {
      const blob = this.blobs.get(digest.replace("-", ":"));
      if (blob === undefined) return sendProgress(res, body, [...progress, { error: `open blobs/${digest.replace(":", "-")}: no such file or directory` }]);
      size += blob;
      progress.push({ status: `using existing layer ${digest}` });
    }
    progress.push({ status: "writing manifest" }, { status: "success" });
    this.install(name, size);
    sendProgress(res, body, progress);
  }

  private copy(res: http.ServerResponse, body: Json): void {
    const source = typeof body.source === "string" ? body.source : "";
    const destination = typeof body.destination === "string" ? body.destination : "";
    if (!validName(source)) throw new OllamaError(400, `source ${JSON.stringify(source)} is invalid`);
    if (!validName(destination)) throw new OllamaError(400, `destination ${JSON.stringify(destination)} is invalid`);
    const model = this.installed.get(normalize(source));
    if (!model) throw new OllamaError(404, `model ${JSON.stringify(source)} not found`);
    this.installed.set(normalize(destination), { ...model, name: normalize(destination) });
    sendEmpty(res, 200);
  }

  private delete(res: http.ServerResponse, body: Json): void {
    const name = nameOf(body);
    if (!validName(name)) throw new OllamaError(400, `name ${JSON.stringify(name)} is invalid`);
    if (!this.installed.delete(normalize(name))) throw new OllamaError(404, `model '${name}' not found`);
    sendEmpty(res, 200);
  }

  private install(name: string, size: number): void {
    const key = normalize(name);
    this.installed.set(key, { name: key, size, sizeVram: size, thinking: false });
  }

  private requireInstalled(model: string): void {
    if (!this.installed.has(normalize(model))) throw new OllamaError(404, `model '${model}' not found`);
  }

  // ---------------------------------------------------------------- blobs

  private async serveBlob(req: http.IncomingMessage, res: http.ServerResponse, call: NativeCall): Promise<void> {
    const digest = call.path.slice(blobPrefix.length);
    call.record(call.method, call.path, undefined);
    if (!/^sha256[:-][0-9a-fA-F]{64}$/.test(digest)) {
      req.resume();
      throw new OllamaError(400, "invalid digest format");
    }
    const key = digest.replace("-", ":");
    if (call.method === "HEAD") {
      if (this.blobs.has(key)) return sendEmpty(res, 200);
      throw new OllamaError(404, `blob ${JSON.stringify(digest)} not found`);
    }
    if (this.blobs.has(key)) {
      req.resume();
      return sendEmpty(res, 200);
    }
    // Hashed as it arrives, like Ollama's NewLayer: a big upload is never held in memory.
    const hash = createHash("sha256");
    let size = 0;
    await new Promise<void>((resolve, reject) => {
      req.on("data", (chunk: Buffer) => {
        size += chunk.length;
        hash.update(chunk);
      });
      req.once("end", resolve);
      req.once("error", reject);
    });
    const got = `sha256:${hash.digest("hex")}`;
    if (got !== key.toLowerCase()) throw new OllamaError(400, `digest mismatch, expected ${JSON.stringify(digest)}, got ${JSON.stringify(got)}`);
    this.blobs.set(key.toLowerCase(), size);
    sendEmpty(res, 201);
  }
}

// -------------------------------------------------------------------- helpers

function parseBody(raw: string): Json {
  if (raw.trim() === "") throw new OllamaError(400, "missing request body");
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new OllamaError(400, `invalid character in request body: ${String(err)}`);
  }
  if (!isRecord(parsed)) throw new OllamaError(400, "json: cannot unmarshal into Go value");
  return parsed;
}

function nameOf(body: Json): string {
  const value = typeof body.model === "string" && body.model !== "" ? body.model : body.name;
  return typeof value === "string" ? value.trim() : "";
}

/** Ollama's model name rules, roughly: parts of letters, digits and `_-.`, no `..`, a tag after `:`. */
function validName(name: string): boolean {
  return /^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,300}$/.test(name) && !name.split(/[/:]/).some((p) => p === "" || p === "." || p === "..");
}

function validFilePath(file: string): boolean {
  return file !== "" && !file.startsWith("/") && file.split("/").every((p) => p !== "" && p !== "." && p !== "..");
}

/** No tag means `:latest` (as the fake's core normalizes). */
function normalize(name: string): string {
  const trimmed = name.trim();
  return trimmed.slice(trimmed.lastIndexOf("/") + 1).includes(":") ? trimmed : `${trimmed}:latest`;
}

function digestOf(name: string): string {
  return `sha256:${createHash("sha256").update(name).digest("hex")}`;
}

/** A unit vector made up from the text: the same text, the same vector. */
function embeddingOf(text: string): number[] {
  const bytes = createHash("sha256").update(text).digest();
  const vector = Array.from({ length: 16 }, (_, i) => (bytes[i]! - 127.5) / 127.5);
  const norm = Math.hypot(...vector) || 1;
  return vector.map((v) => v / norm);
}

/** NDJSON progress (the default), or with stream:false the last line alone (500 if it is an error). */
function sendProgress(res: http.ServerResponse, body: Json, lines: Json[]): void {
  if (body.stream === false) {
    const last = lines[lines.length - 1]!;
    return sendJson(res, "error" in last ? 500 : 200, last);
  }
  res.writeHead(200, { "Content-Type": "application/x-ndjson" });
  for (const line of lines) res.write(`${JSON.stringify(line)}\n`);
  res.end();
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

function sendEmpty(res: http.ServerResponse, status: number): void {
  res.writeHead(status, { "Content-Length": 0 });
  res.end();
}

function postJson(ollamaUrl: string, path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(new URL(path, ollamaUrl), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal });
}

function readText(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => resolve(Buffer.concat(parts).toString("utf8")));
    req.on("error", reject);
  });
}

function isRecord(value: unknown): value is Json {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
