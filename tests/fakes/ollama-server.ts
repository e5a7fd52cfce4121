/**
 * A fake Ollama: a real HTTP server on 127.0.0.1 that speaks Ollama's API the way the
 * real one does (REFERENCE.md §2), so the `ollama` client and ChatOllama run against
 * it unchanged.
 *
 *   POST /api/chat, /api/generate   NDJSON stream (or one object with stream:false),
 *                                   structured output for `format`, load/unload with
 *                                   empty messages/prompt + keep_alive, 404 for models
 *                                   that are not installed
 *   GET  /api/ps                    loaded models; an unloaded model stays listed for
 *                                   `unloadLingerMs` (or forever), like the real one
 *                                   (`strict: true` lingers 200 ms unless told otherwise)
 *   GET  /api/tags, /api/version, /, POST /api/show
 *
 * It shares the simulated GPU (tests/fakes/fake-gpu.mjs) with the sd doubles: the models
 * it lists are written to `gpuDir`. Without a card there (the strict mode), a model loading
 * (or any generation) while an sd double runs is recorded as a violation. With a card
 * (setCard), each listed model claims its VRAM (`size_vram`, default its `size`; see
 * `modelSizes`) as holder `llm-<name>`, pid `runnerPid`, from its load until it leaves
 * /api/ps (lingering included). A model the card has no room for is partly offloaded, as
 * Ollama does: it gets what is free and /api/ps reports that as size_vram (< size); that is a
 * violation only when an sd double holds VRAM then (the LLM was loaded beside a diffusion job
 * that left it no room). Chat calls while an sd double runs are no violation with a card.
 * Set the card before the double loads anything: a model loaded (or `resident`) while there was
 * no card holds no claim. `vramReleaseLagMs` keeps a model's VRAM after it left /api/ps, as the
 * driver does for a moment.
 *
 * Every request is recorded with the time the double spent on it (receivedAt..finishedAt,
 * on the clock every process shares: performance.timeOrigin + now(), in ms), and an unload
 * with the moment its model left /api/ps (goneAt): what an outside observer counts as
 * Ollama's own time.
 *
 *   const ollama = await startFakeOllama({ installed: ["qwen2.5:3b"], gpuDir, unloadLingerMs: 200 });
 *   setCard(gpuDir, CARDS["12GB"]);
 *   await startFakeOllama({ gpuDir, modelSizes: { "qwen2.5:3b": 2_500_000_000 } });
 *   ollama.url; ollama.stats.unload; ollama.requests; await ollama.setFault({ kind: "down" }); await ollama.close();
 */
import http from "node:http";
import { performance } from "node:perf_hooks";
import type { AddressInfo, Socket } from "node:net";
import { claim, claims, llmHolder, readCard, recordViolation, release, runningDiffusions, setResidentModels } from "./fake-gpu.mjs";
import { defaultResponder, type Responder, type ResponderRequest } from "./ollama/default-responder.js";
import { FOREVER, parseKeepAlive } from "./ollama/keep-alive.js";
import { isOpenAiRoute, serveOpenAiRoute } from "./ollama/openai-routes.js";
import { isNativeRoute, NativeRoutes } from "./ollama/native-routes.js";

export { defaultResponder, valueForSchema, type Responder, type ResponderRequest } from "./ollama/default-responder.js";

export interface InstalledModel {
  name: string;
  /** Bytes the loaded model takes (ps `size`). Default `modelSizes[name]`, else 2.5 GB. */
  size?: number;
  /**
   * Bytes of it meant for the GPU (ps `size_vram`); less than size = partly on the CPU. Default
   * size. With a card, the model gets at most what the card has free (then ps shows that).
   */
  sizeVram?: number;
  /** A thinking model (Qwen3): thinks unless `think:false`. Others reject `think:true` with 400. */
  thinking?: boolean;
  family?: string;
  parameterSize?: string;
  quantizationLevel?: string;
}

export type RequestKind = "chat" | "generate" | "load" | "unload" | "ps" | "tags" | "version" | "show" | "root" | "other";

export type FakeOllamaFault =
  /** The server stops listening (connections refused) and drops its models, until cleared. */
  | { kind: "down" }
  /** Answer with this HTTP status and `{"error": ...}`. */
  | { kind: "status"; status: number; error?: string }
  /** Reset the TCP connection after the first chunk of a stream. */
  | { kind: "reset-mid-stream" }
  /** The assistant's content is not valid JSON (whatever `format` asked for). */
  | { kind: "invalid-json" }
  /** HTTP 200, a chunk, then a final `{"error": ...}` line, as Ollama reports errors mid-stream. */
  | { kind: "error-mid-stream"; error?: string }
  /** Never answer (until the fault is cleared or the server closes). */
  | { kind: "hang" };

export interface FaultScope {
  /** Request kinds the fault applies to. Default: chat and generate. */
  on?: RequestKind[];
  /** Apply to this many matching requests, then clear. Default: until cleared. */
  times?: number;
}

/** How long a strict double keeps an unloaded model in /api/ps (REFERENCE.md §2: a few hundred ms). */
export const STRICT_UNLOAD_LINGER_MS = 200;

export interface FakeOllamaOptions {
  /**
   * Take none of the double's shortcuts around an unload, like Ollama's scheduler
   * (server/sched.go): the unload call only marks the runner expired; the runner stays in
   * /api/ps until it has been stopped (`unloadLingerMs`, default STRICT_UNLOAD_LINGER_MS
   * here) and is dropped from it the moment it has; a request for a model that is being
   * unloaded waits until it is gone and then loads it anew, instead of taking it over.
   */
  strict?: boolean;
  /** Installed models (names without a tag mean `:latest`). Default ["qwen2.5:3b"]. */
  installed?: (string | InstalledModel)[];
  /** Models already loaded when the server starts (keep_alive forever). */
  resident?: string[];
  /** Simulated GPU directory shared with the sd doubles (tests/fakes/fake-gpu.mjs). */
  gpuDir?: string;
  /** Bytes each model takes once loaded (ps `size`), by name; an InstalledModel's own `size` wins. Default 2.5 GB. */
  modelSizes?: Record<string, number>;
  /** The pid the fake nvidia-smi lists for the runner holding a model's VRAM. Default this process's pid. */
  runnerPid?: number;
  /** How long /api/ps keeps listing a model after an unload (or expiry). Default 0 (strict: 200). */
  unloadLingerMs?: number;
  /** An unloaded model never leaves /api/ps. */
  unloadNeverCompletes?: boolean;
  /**
   * With a card: how long a model's VRAM stays claimed after it left /api/ps (Ollama's runner
   * is gone, the driver has not given the memory back yet: REFERENCE.md §2, "typical convergence
   * is 0.5-1.5 s"). nvidia-smi shows it as used meanwhile. Default 0.
   */
  vramReleaseLagMs?: number;
  /** How long loading a model takes (it is listed while loading). Default 0. */
  loadMs?: number;
  /** Delay before a chat/generate answer starts (prompt processing). Default 0. */
  chatDelayMs?: number;
  /** Delay between streamed chunks. Default 0. */
  chunkDelayMs?: number;
  /** What the assistant answers. Default: defaultResponder. */
  responder?: Responder;
  /** GET /api/version. Default "0.12.6". */
  version?: string;
}

export interface RecordedRequest {
  kind: RequestKind;
  method: string;
  path: string;
  /** The parsed JSON body (undefined for GET). */
  body: Record<string, unknown> | undefined;
  at: number;
  /** When the answer to a chat, generate, load or unload call was sent in full (a load: when the model was in). */
  answeredAt?: number;
  /** When the request reached the double, on the shared clock (performance.timeOrigin + now, ms). */
  receivedAt: number;
  /** When its answer was sent in full or the exchange ended, on the same clock. */
  finishedAt?: number;
  /** An unload: when its model left /api/ps, on the same clock (unset while it lingers). */
  goneAt?: number;
}

export type FakeOllamaStats = Record<RequestKind, number> & {
  /** Times a model was actually (re)loaded into the simulated VRAM, by any request. */
  modelLoads: number;
  /** Chat/generate requests the client hung up on before the answer was complete. */
  cancelled: number;
};

export interface FakeOllama {
  readonly url: string;
  readonly port: number;
  /** Counts per request kind, and real model loads. */
  readonly stats: FakeOllamaStats;
  /** Every request received, in order. */
  readonly requests: RecordedRequest[];
  /** Names /api/ps lists now (lingering ones included). */
  listed(): string[];
  /** Loads a model as if a request had (for test setup; not counted as a request). */
  preload(model: string, opts?: { numCtx?: number; keepAliveMs?: number }): void;
  setResponder(responder: Responder | undefined): void;
  /** Changes timing options on the fly (linger, delays). */
  configure(options: Partial<Pick<FakeOllamaOptions, "unloadLingerMs" | "unloadNeverCompletes" | "loadMs" | "chatDelayMs" | "chunkDelayMs" | "vramReleaseLagMs">>): void;
  /** Injects a fault; `null` clears it (and brings a "down" server back up on the same port). */
  setFault(fault: FakeOllamaFault | null, scope?: FaultScope): Promise<void>;
  resetStats(): void;
  close(): Promise<void>;
}

interface LoadedModel {
  name: string;
  numCtx: number | undefined;
  expiresAt: number;
  unloadingSince: number | undefined;
  dropTimer: NodeJS.Timeout | undefined;
  expiryTimer: NodeJS.Timeout | undefined;
  /** Requests using it now: an expiry waits for them, like Ollama's refCount. */
  inFlight: number;
  /** Bytes on the GPU (ps `size_vram`): the model's sizeVram, or what the card had free. */
  vramBytes: number;
  /** Unload requests answered while it lingers: their goneAt is set when it leaves /api/ps. */
  unloadRequests: RecordedRequest[];
  /** Strict: requests waiting for it to be gone before they load it anew. */
  whenGone: (() => void)[];
}

const DEFAULT_SIZE = 2_500_000_000;
const MIB = 1024 * 1024;
const DEFAULT_CONTEXT = 4096;
const requestKinds: RequestKind[] = ["chat", "generate", "load", "unload", "ps", "tags", "version", "show", "root", "other"];

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startFakeOllama(options: FakeOllamaOptions = {}): Promise<FakeOllama> {
  const server = new FakeOllamaServer(options);
  await server.listen(0);
  return server;
}

class FakeOllamaServer implements FakeOllama {
  readonly stats: FakeOllamaStats = emptyStats();
  readonly requests: RecordedRequest[] = [];
  private readonly installed = new Map<string, Required<Pick<InstalledModel, "size" | "sizeVram" | "thinking">> & InstalledModel>();
  private readonly loaded = new Map<string, LoadedModel>();
  /** Embeddings, pulls, creates, blobs... (ollama/native-routes.ts), on the same installed models. */
  private readonly native = new NativeRoutes(this.installed);
  private readonly sockets = new Set<Socket>();
  private readonly hanging = new Set<http.ServerResponse>();
  /** Claims of models that left /api/ps, released after vramReleaseLagMs. */
  private readonly lagging = new Map<string, NodeJS.Timeout>();
  /** When each request arrived (the 'request' event), for RecordedRequest.receivedAt. */
  private readonly arrivals = new WeakMap<http.ServerResponse, number>();
  private readonly server: http.Server;
  private responder: Responder;
  private timing: Required<Pick<FakeOllamaOptions, "unloadLingerMs" | "unloadNeverCompletes" | "loadMs" | "chatDelayMs" | "chunkDelayMs" | "vramReleaseLagMs">>;
  private fault: { fault: FakeOllamaFault; on: RequestKind[]; remaining: number } | undefined;
  private down = false;
  private closed = false;
  private boundPort = 0;

  constructor(private readonly options: FakeOllamaOptions) {
    const sizes = new Map(Object.entries(options.modelSizes ?? {}).map(([name, bytes]) => [normalize(name), bytes]));
    for (const entry of options.installed ?? ["qwen2.5:3b"]) {
      const spec = typeof entry === "string" ? { name: entry } : entry;
      const size = spec.size ?? sizes.get(normalize(spec.name)) ?? DEFAULT_SIZE;
      this.installed.set(normalize(spec.name), { ...spec, size, sizeVram: spec.sizeVram ?? size, thinking: spec.thinking ?? false });
    }
    this.responder = options.responder ?? defaultResponder;
    this.timing = {
      unloadLingerMs: options.unloadLingerMs ?? (options.strict ? STRICT_UNLOAD_LINGER_MS : 0),
      unloadNeverCompletes: options.unloadNeverCompletes ?? false,
      vramReleaseLagMs: options.vramReleaseLagMs ?? 0,
      loadMs: options.loadMs ?? 0,
      chatDelayMs: options.chatDelayMs ?? 0,
      chunkDelayMs: options.chunkDelayMs ?? 0,
    };
    this.server = http.createServer((req, res) => {
      this.arrivals.set(res, epochNow());
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) sendJson(res, 500, { error: err instanceof Error ? err.message : String(err) });
        else res.destroy();
      });
    });
    this.server.on("connection", (socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
    for (const model of options.resident ?? []) this.preload(model);
  }

  get url(): string {
    return `http://127.0.0.1:${this.boundPort}`;
  }

  get port(): number {
    return this.boundPort;
  }

  listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, "127.0.0.1", () => {
        this.server.off("error", reject);
        this.boundPort = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  listed(): string[] {
    return [...this.loaded.keys()];
  }

  preload(model: string, opts: { numCtx?: number; keepAliveMs?: number } = {}): void {
    const name = normalize(model);
    if (!this.installed.has(name)) throw new Error(`fake ollama: ${name} is not installed`);
    this.loadIntoVram(name, opts.numCtx, "preload");
    this.touch(name, opts.keepAliveMs ?? FOREVER);
  }

  setResponder(responder: Responder | undefined): void {
    this.responder = responder ?? defaultResponder;
  }

  configure(options: Parameters<FakeOllama["configure"]>[0]): void {
    this.timing = { ...this.timing, ...options };
  }

  async setFault(fault: FakeOllamaFault | null, scope: FaultScope = {}): Promise<void> {
    if (fault?.kind === "down") {
      this.fault = undefined;
      await this.goDown();
      return;
    }
    if (this.down) await this.comeUp();
    for (const res of this.hanging) res.destroy();
    this.hanging.clear();
    this.fault = fault === null ? undefined : { fault, on: scope.on ?? ["chat", "generate"], remaining: scope.times ?? Infinity };
  }

  resetStats(): void {
    Object.assign(this.stats, emptyStats());
    this.requests.length = 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const models = [...this.loaded.values()];
    for (const model of models) clearTimers(model);
    this.releaseAll();
    this.syncGpu();
    for (const model of models) this.gone(model);
    if (!this.down) await this.stopListening();
  }

  // ---- simulated Ollama down / up ----

  private async goDown(): Promise<void> {
    if (this.down) return;
    this.down = true;
    await this.stopListening();
    // A stopped Ollama holds no VRAM.
    const models = [...this.loaded.values()];
    for (const model of models) clearTimers(model);
    this.releaseAll();
    this.syncGpu();
    for (const model of models) this.gone(model);
  }

  private async comeUp(): Promise<void> {
    if (!this.down) return;
    await this.listen(this.boundPort);
    this.down = false;
  }

  private stopListening(): Promise<void> {
    return new Promise((resolve) => {
      for (const res of this.hanging) res.destroy();
      this.hanging.clear();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
      for (const socket of this.sockets) socket.destroy();
    });
  }

  // ---- request handling ----

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? "GET";
    const path = new URL(req.url ?? "/", "http://x").pathname;
    // Before the body is read here: a blob upload is hashed as it streams (ollama/native-routes.ts).
    if (isNativeRoute(method, path)) return this.native.serve(req, res, { method, path, ollamaUrl: this.url, record: (m, p, b) => this.record(res, "other", m, p, b) });
    const raw = method === "POST" || method === "DELETE" ? await readBody(req) : "";
    // Ollama's OpenAI-compatible API: rewritten into the native calls below (ollama/openai-routes.ts).
    if (isOpenAiRoute(method, path)) return serveOpenAiRoute(res, { method, path, raw, ollamaUrl: this.url });

    if (method === "GET" || method === "HEAD") {
      const kind: RequestKind = path === "/" ? "root" : path === "/api/ps" ? "ps" : path === "/api/tags" ? "tags" : path === "/api/version" ? "version" : "other";
      this.record(res, kind, method, path, undefined);
      if (await this.applyFault(kind, res)) return;
      if (kind === "root") return sendText(res, 200, "Ollama is running", method === "HEAD");
      if (kind === "ps") return sendJson(res, 200, { models: this.psModels() });
      if (kind === "tags") return sendJson(res, 200, { models: this.tagModels() });
      if (kind === "version") return sendJson(res, 200, { version: this.options.version ?? "0.12.6" });
      return sendText(res, 404, "404 page not found");
    }
    if (method !== "POST" || !["/api/chat", "/api/generate", "/api/show"].includes(path)) {
      this.record(res, "other", method, path, undefined);
      return sendText(res, 404, "404 page not found");
    }

    let body: Record<string, unknown>;
    try {
      if (raw.trim() === "") throw new HttpError(400, "missing request body");
      const parsed: unknown = JSON.parse(raw);
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new HttpError(400, "invalid request body");
      body = parsed as Record<string, unknown>;
    } catch (err) {
      this.record(res, "other", method, path, undefined);
      return sendJson(res, 400, { error: err instanceof HttpError ? err.message : `invalid character in request body: ${String(err)}` });
    }

    if (path === "/api/show") {
      this.record(res, "show", method, path, body);
      if (await this.applyFault("show", res)) return;
      const name = normalize(String(body.model ?? body.name ?? ""));
      const model = this.installed.get(name);
      if (!model) return sendJson(res, 404, { error: `model '${String(body.model ?? body.name ?? "")}' not found` });
      return sendJson(res, 200, { details: details(model), model_info: {}, capabilities: model.thinking ? ["completion", "thinking"] : ["completion"] });
    }

    const endpoint = path === "/api/chat" ? "chat" : "generate";
    const messages = endpoint === "chat" ? toMessages(body.messages) : generateMessages(body);
    const empty = endpoint === "chat" ? messages.length === 0 : String(body.prompt ?? "") === "";
    let keepAliveMs: number;
    try {
      keepAliveMs = parseKeepAlive(body.keep_alive);
    } catch (err) {
      this.record(res, endpoint, method, path, body);
      return sendJson(res, 400, { error: (err as Error).message });
    }
    const kind: RequestKind = empty ? (keepAliveMs === 0 ? "unload" : "load") : endpoint;
    const recorded = this.record(res, kind, method, path, body);
    res.once("finish", () => (recorded.answeredAt = Date.now()));
    if (await this.applyFault(kind, res)) return;

    const requested = typeof body.model === "string" ? body.model : "";
    if (requested === "") return sendJson(res, 400, { error: "model is required" });
    const name = normalize(requested);
    const model = this.installed.get(name);
    if (!model) return sendJson(res, 404, { error: `model '${requested}' not found` });

    if (kind === "unload") {
      this.expire(name);
      const lingering = this.loaded.get(name);
      if (lingering?.unloadingSince !== undefined) lingering.unloadRequests.push(recorded);
      else if (!lingering) recorded.goneAt = epochNow();
      return sendJson(res, 200, this.frame(endpoint, requested, "", { done: true, done_reason: "unload" }));
    }
    if (body.think === true && !model.thinking) return sendJson(res, 400, { error: `"${requested}" does not support thinking` });

    res.on("close", () => {
      if (!res.writableFinished) this.stats.cancelled += 1;
    });
    const options = isRecord(body.options) ? body.options : undefined;
    const numCtx = typeof options?.num_ctx === "number" ? options.num_ctx : undefined;
    this.checkGpuFree(kind, name);
    // Ollama queues a request for a runner being stopped until it is gone, then loads anew.
    if (this.options.strict) await this.untilGone(name);
    if (res.destroyed) return;
    const started = process.hrtime.bigint();
    const entry = this.acquire(name, numCtx, kind);
    try {
      if (this.timing.loadMs > 0 && entry.justLoaded) await delay(this.timing.loadMs, res);
      if (res.destroyed) return;
      const loadNs = Number(process.hrtime.bigint() - started);
      if (kind === "load") {
        return sendJson(res, 200, this.frame(endpoint, requested, "", { done: true, done_reason: "load" }));
      }
      await this.answer(res, {
        endpoint,
        requested,
        model,
        body,
        messages,
        started,
        loadNs: entry.justLoaded ? loadNs : 0,
      });
    } finally {
      this.release(name, keepAliveMs);
    }
  }

  private async answer(
    res: http.ServerResponse,
    a: {
      endpoint: "chat" | "generate";
      requested: string;
      model: InstalledModel & { thinking: boolean };
      body: Record<string, unknown>;
      messages: { role: string; content: string }[];
      started: bigint;
      loadNs: number;
    },
  ): Promise<void> {
    const request: ResponderRequest = {
      endpoint: a.endpoint,
      model: normalize(a.requested),
      messages: a.messages,
      lastUserMessage: [...a.messages].reverse().find((m) => m.role === "user")?.content ?? "",
      format: a.body.format,
      options: isRecord(a.body.options) ? a.body.options : undefined,
      think: a.body.think,
    };
    let content = await this.responder(request);
    const fault = this.takeFault(a.endpoint);
    if (fault?.kind === "invalid-json") content = `Sure! Here is the prompt: ${content.slice(0, Math.max(1, Math.floor(content.length / 2)))}`;
    const thinking = a.model.thinking && a.body.think !== false ? `The user wants: ${request.lastUserMessage}. Let me think.` : "";

    // Like Ollama, stop working on a request whose client went away.
    if (this.timing.chatDelayMs > 0) await delay(this.timing.chatDelayMs, res);
    if (res.destroyed) return;
    const promptTokens = a.messages.reduce((n, m) => n + Math.ceil(m.content.length / 4), 0);
    const evalCount = Math.max(1, Math.ceil(content.length / 4));
    const finalFields = () => ({
      done: true,
      done_reason: "stop",
      total_duration: Number(process.hrtime.bigint() - a.started),
      load_duration: a.loadNs,
      prompt_eval_count: promptTokens,
      prompt_eval_duration: promptTokens * 1_000_000,
      eval_count: evalCount,
      eval_duration: evalCount * 20_000_000,
      ...(a.endpoint === "generate" ? { context: [1, 2, 3] } : {}),
    });

    if (a.body.stream === false) {
      if (fault?.kind === "reset-mid-stream") return void res.socket?.resetAndDestroy();
      if (fault?.kind === "error-mid-stream") return sendJson(res, 500, { error: fault.error ?? "llama runner process has terminated" });
      const extra = thinking ? { thinking } : {};
      return sendJson(res, 200, this.frame(a.endpoint, a.requested, content, finalFields(), extra));
    }

    res.writeHead(200, { "Content-Type": "application/x-ndjson", Date: new Date().toUTCString() });
    const write = (line: unknown) => new Promise<void>((resolve) => res.write(`${JSON.stringify(line)}\n`, () => resolve()));
    const pieces = [...(thinking ? chunk(thinking).map((t) => ({ thinking: t, content: "" })) : []), ...chunk(content).map((c) => ({ content: c }))];
    for (const [i, piece] of pieces.entries()) {
      if (res.destroyed) return;
      const { content: c, ...rest } = piece;
      await write(this.frame(a.endpoint, a.requested, c, { done: false }, rest));
      if (i === 0 && fault?.kind === "reset-mid-stream") {
        res.socket?.resetAndDestroy();
        return;
      }
      if (i === 0 && fault?.kind === "error-mid-stream") {
        await write({ error: fault.error ?? "llama runner process has terminated: exit status 2" });
        res.end();
        return;
      }
      if (this.timing.chunkDelayMs > 0) await delay(this.timing.chunkDelayMs, res);
    }
    await write(this.frame(a.endpoint, a.requested, "", finalFields()));
    res.end();
  }

  /** One NDJSON line / JSON answer in the shape of the endpoint. */
  private frame(
    endpoint: "chat" | "generate",
    model: string,
    content: string,
    fields: Record<string, unknown>,
    messageExtra: Record<string, unknown> = {},
  ): Record<string, unknown> {
    const created_at = new Date().toISOString();
    if (endpoint === "generate") {
      const { thinking } = messageExtra;
      return { model, created_at, response: content, ...(thinking ? { thinking } : {}), ...fields };
    }
    return { model, created_at, message: { role: "assistant", content, ...messageExtra }, ...fields };
  }

  private record(res: http.ServerResponse, kind: RequestKind, method: string, path: string, body: Record<string, unknown> | undefined): RecordedRequest {
    this.stats[kind] += 1;
    const recorded: RecordedRequest = { kind, method, path, body, at: Date.now(), receivedAt: this.arrivals.get(res) ?? epochNow() };
    this.requests.push(recorded);
    const finished = () => (recorded.finishedAt ??= epochNow());
    if (res.writableFinished || res.destroyed) finished();
    else {
      res.once("finish", finished);
      res.once("close", finished);
    }
    return recorded;
  }

  /** Sends the fault's answer if one applies to `kind`; true when the request is done. */
  private async applyFault(kind: RequestKind, res: http.ServerResponse): Promise<boolean> {
    const active = this.fault;
    if (!active || !active.on.includes(kind)) return false;
    const { fault } = active;
    if (fault.kind === "status") {
      this.consumeFault();
      sendJson(res, fault.status, { error: fault.error ?? http.STATUS_CODES[fault.status]?.toLowerCase() ?? "error" });
      return true;
    }
    if (fault.kind === "hang") {
      this.consumeFault();
      this.hanging.add(res);
      res.on("close", () => this.hanging.delete(res));
      return true;
    }
    // Stream faults are applied while answering (takeFault).
    return false;
  }

  /** The stream fault for this answer, if any (consumed). */
  private takeFault(kind: RequestKind): FakeOllamaFault | undefined {
    const active = this.fault;
    if (!active || !active.on.includes(kind)) return undefined;
    if (!["reset-mid-stream", "invalid-json", "error-mid-stream"].includes(active.fault.kind)) return undefined;
    this.consumeFault();
    return active.fault;
  }

  private consumeFault(): void {
    if (!this.fault) return;
    this.fault.remaining -= 1;
    if (this.fault.remaining <= 0) this.fault = undefined;
  }

  // ---- the simulated runner lifecycle ----

  /** Marks a model in use, loading it (or reloading it with new options) when needed. */
  private acquire(name: string, numCtx: number | undefined, kind: RequestKind): LoadedModel & { justLoaded: boolean } {
    const existing = this.loaded.get(name);
    // Options are compared as Ollama does: defaults filled in, so a request without
    // num_ctx after a load with num_ctx 8192 reloads the model.
    const sameOptions = existing !== undefined && (existing.numCtx ?? DEFAULT_CONTEXT) === (numCtx ?? DEFAULT_CONTEXT);
    let entry: LoadedModel;
    let justLoaded = false;
    if (existing && existing.unloadingSince === undefined && sameOptions) {
      entry = existing;
    } else {
      // Not loaded, being unloaded (Ollama waits for the old runner, then loads anew), or
      // loaded with different options such as num_ctx (Ollama reloads the runner).
      entry = this.loadIntoVram(name, numCtx, `${kind} request`);
      justLoaded = true;
    }
    entry.inFlight += 1;
    if (entry.expiryTimer) clearTimeout(entry.expiryTimer);
    entry.expiryTimer = undefined;
    return Object.assign(entry, { justLoaded });
  }

  private release(name: string, keepAliveMs: number): void {
    const entry = this.loaded.get(name);
    if (!entry || entry.unloadingSince !== undefined) return;
    entry.inFlight = Math.max(0, entry.inFlight - 1);
    this.touch(name, keepAliveMs);
  }

  /** Sets the expiry after a request, as keep_alive asks (0: unload right away). */
  private touch(name: string, keepAliveMs: number): void {
    const entry = this.loaded.get(name);
    if (!entry) return;
    if (entry.expiryTimer) clearTimeout(entry.expiryTimer);
    entry.expiryTimer = undefined;
    entry.expiresAt = keepAliveMs === FOREVER ? FOREVER : Date.now() + keepAliveMs;
    if (keepAliveMs === 0) return this.expire(name);
    if (keepAliveMs !== FOREVER && entry.inFlight === 0) {
      entry.expiryTimer = setTimeout(() => this.expire(name), Math.min(keepAliveMs, 2 ** 31 - 1));
      entry.expiryTimer.unref();
    }
  }

  private loadIntoVram(name: string, numCtx: number | undefined, why: string): LoadedModel {
    const old = this.loaded.get(name);
    if (old) {
      clearTimers(old);
      // Taken over before it was gone (preload, or a request without `strict`): nobody waits any more.
      for (const resume of old.whenGone.splice(0)) resume();
    }
    const entry: LoadedModel = {
      name,
      numCtx,
      expiresAt: Date.now() + 5 * 60_000,
      unloadingSince: undefined,
      dropTimer: undefined,
      expiryTimer: undefined,
      inFlight: 0,
      vramBytes: this.installed.get(name)?.sizeVram ?? DEFAULT_SIZE,
      unloadRequests: [],
      whenGone: [],
    };
    this.loaded.set(name, entry);
    this.stats.modelLoads += 1;
    const gpuDir = this.options.gpuDir;
    const lagging = this.lagging.get(name);
    if (lagging) clearTimeout(lagging);
    this.lagging.delete(name);
    if (gpuDir !== undefined && readCard(gpuDir) !== undefined) {
      this.claimVram(gpuDir, entry, why);
    } else if (gpuDir !== undefined) {
      const pids = runningDiffusions(gpuDir);
      if (pids.length > 0) recordViolation(gpuDir, "ollama", `${name} loaded (${why}) while sd-cli ${pids.join(",")} holds the GPU`);
    }
    this.syncGpu();
    return entry;
  }

  /**
   * With a card: the model takes its VRAM, or what is free (Ollama offloads the rest to the
   * CPU). Squeezed by an sd double's claim: a violation.
   */
  private claimVram(gpuDir: string, entry: LoadedModel, why: string): void {
    const wanted = entry.vramBytes;
    const wantedMiB = Math.ceil(wanted / MIB);
    const granted = claim(gpuDir, {
      holder: llmHolder(entry.name),
      kind: "llm",
      mib: wantedMiB,
      pid: this.options.runnerPid ?? process.pid,
      processName: "/usr/local/bin/ollama",
      label: `ollama ${entry.name}`,
      partial: true,
    });
    entry.vramBytes = granted.mib >= wantedMiB ? wanted : granted.mib * MIB;
    if (granted.mib < wantedMiB) {
      const sd = claims(gpuDir).filter((c) => c.kind === "sd");
      if (sd.length > 0) {
        recordViolation(
          gpuDir,
          "ollama",
          `${entry.name} loaded (${why}) with ${granted.mib} of ${wantedMiB} MiB in VRAM (the rest on the CPU): ` +
            `${sd.map((c) => `${c.label} (pid ${c.pid}) holds ${c.mib} MiB`).join(", ")}`,
        );
      }
    }
  }

  /** Every model leaves VRAM at once (close, down). */
  private releaseAll(): void {
    const gpuDir = this.options.gpuDir;
    for (const timer of this.lagging.values()) clearTimeout(timer);
    const names = [...this.loaded.keys(), ...this.lagging.keys()];
    this.lagging.clear();
    if (gpuDir !== undefined) for (const name of names) release(gpuDir, llmHolder(name));
    this.loaded.clear();
  }

  /** A model left /api/ps: its VRAM comes back now, or after vramReleaseLagMs. */
  private releaseVram(name: string): void {
    const gpuDir = this.options.gpuDir;
    if (gpuDir === undefined) return;
    const lag = this.timing.vramReleaseLagMs;
    if (lag <= 0) return release(gpuDir, llmHolder(name));
    const timer = setTimeout(() => {
      this.lagging.delete(name);
      release(gpuDir, llmHolder(name));
    }, lag);
    timer.unref();
    this.lagging.set(name, timer);
  }

  /**
   * Invariant 2: no LLM call may reach Ollama while a diffusion holds the GPU. A call
   * that (re)loads its model is recorded by loadIntoVram; this covers a model that
   * (wrongly) stayed resident.
   */
  private checkGpuFree(kind: RequestKind, name: string): void {
    const gpuDir = this.options.gpuDir;
    const entry = this.loaded.get(name);
    if (gpuDir === undefined || entry === undefined || entry.unloadingSince !== undefined) return;
    // With a card, the LLM may answer beside a diffusion job that fits (issue 15).
    if (readCard(gpuDir) !== undefined) return;
    const pids = runningDiffusions(gpuDir);
    if (pids.length > 0) recordViolation(gpuDir, "ollama", `${kind} request for ${name} reached Ollama while sd-cli ${pids.join(",")} holds the GPU`);
  }

  /** The unload: Ollama marks the runner expired; it leaves /api/ps only later. */
  private expire(name: string): void {
    const entry = this.loaded.get(name);
    if (!entry || entry.unloadingSince !== undefined) return;
    if (entry.expiryTimer) clearTimeout(entry.expiryTimer);
    entry.expiryTimer = undefined;
    entry.unloadingSince = Date.now();
    entry.expiresAt = entry.unloadingSince;
    if (this.timing.unloadNeverCompletes) return;
    if (this.timing.unloadLingerMs <= 0) return this.drop(name, entry);
    entry.dropTimer = setTimeout(() => this.drop(name, entry), this.timing.unloadLingerMs);
    entry.dropTimer.unref();
  }

  private drop(name: string, entry: LoadedModel): void {
    if (this.loaded.get(name) !== entry) return;
    clearTimers(entry);
    this.loaded.delete(name);
    this.releaseVram(name);
    this.syncGpu();
    this.gone(entry);
  }

  /** The model left /api/ps: its unloads are done, and whoever waited for it may load it. */
  private gone(entry: LoadedModel): void {
    const at = epochNow();
    for (const request of entry.unloadRequests.splice(0)) request.goneAt ??= at;
    for (const resume of entry.whenGone.splice(0)) resume();
  }

  /** Resolves once `name` is not being unloaded (at once when it is loaded or absent). */
  private untilGone(name: string): Promise<void> {
    const entry = this.loaded.get(name);
    if (entry?.unloadingSince === undefined) return Promise.resolve();
    return new Promise((resolve) => entry.whenGone.push(resolve));
  }

  private syncGpu(): void {
    if (this.options.gpuDir !== undefined) setResidentModels(this.options.gpuDir, this.listed());
  }

  private psModels(): Record<string, unknown>[] {
    return [...this.loaded.values()].map((entry) => {
      const model = this.installed.get(entry.name);
      const size = model?.size ?? DEFAULT_SIZE;
      return {
        name: entry.name,
        model: entry.name,
        size,
        digest: digestOf(entry.name),
        details: model ? details(model) : {},
        expires_at: entry.expiresAt === FOREVER ? "2318-01-01T00:00:00Z" : new Date(entry.expiresAt).toISOString(),
        size_vram: entry.vramBytes,
        context_length: entry.numCtx ?? DEFAULT_CONTEXT,
      };
    });
  }

  private tagModels(): Record<string, unknown>[] {
    return [...this.installed.entries()].map(([name, model]) => ({
      name,
      model: name,
      modified_at: "2025-06-01T12:00:00Z",
      size: Math.round(model.size * 0.8),
      digest: digestOf(name),
      details: details(model),
    }));
  }
}

/** The clock every process can share: performance.timeOrigin + now(), in ms since the epoch. */
function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

function emptyStats(): FakeOllamaStats {
  const stats = { modelLoads: 0, cancelled: 0 } as FakeOllamaStats;
  for (const kind of requestKinds) stats[kind] = 0;
  return stats;
}

function clearTimers(entry: LoadedModel): void {
  if (entry.dropTimer) clearTimeout(entry.dropTimer);
  if (entry.expiryTimer) clearTimeout(entry.expiryTimer);
  entry.dropTimer = undefined;
  entry.expiryTimer = undefined;
}

/** Ollama's name normalization: no tag means `:latest`. */
function normalize(name: string): string {
  const trimmed = name.trim();
  return trimmed.slice(trimmed.lastIndexOf("/") + 1).includes(":") ? trimmed : `${trimmed}:latest`;
}

function details(model: InstalledModel): Record<string, unknown> {
  const family = model.family ?? (model.name.startsWith("qwen") ? "qwen2" : "llama");
  return {
    parent_model: "",
    format: "gguf",
    family,
    families: [family],
    parameter_size: model.parameterSize ?? "3.1B",
    quantization_level: model.quantizationLevel ?? "Q4_K_M",
  };
}

function digestOf(name: string): string {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return h.toString(16).padStart(8, "0").repeat(8);
}

function toMessages(value: unknown): { role: string; content: string }[] {
  if (!Array.isArray(value)) return [];
  return value.filter(isRecord).map((m) => ({ role: String(m.role ?? "user"), content: typeof m.content === "string" ? m.content : "" }));
}

function generateMessages(body: Record<string, unknown>): { role: string; content: string }[] {
  const out: { role: string; content: string }[] = [];
  if (typeof body.system === "string" && body.system !== "") out.push({ role: "system", content: body.system });
  if (typeof body.prompt === "string" && body.prompt !== "") out.push({ role: "user", content: body.prompt });
  return out;
}

/** Splits an answer into token-like pieces (at least three when it has three characters). */
function chunk(text: string): string[] {
  if (text === "") return [""];
  const words = text.match(/\S+\s*|\s+/g) ?? [text];
  if (words.length >= 3) return words;
  const size = Math.max(1, Math.ceil(text.length / 3));
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => resolve(Buffer.concat(parts).toString("utf8")));
    req.on("error", reject);
  });
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

function sendText(res: http.ServerResponse, status: number, text: string, headOnly = false): void {
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": Buffer.byteLength(text) });
  res.end(headOnly ? undefined : text);
}

/** Waits `ms`, or less if the client hangs up first. */
function delay(ms: number, res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      res.off("close", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    res.on("close", done);
  });
}
