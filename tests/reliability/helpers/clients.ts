import { makePng, parseSse } from "../../server/harness.js";
import { errorShapeProblem } from "./error-shapes.js";

/**
 * One request in each dialect, the way its clients make it, reduced to what the client
 * ends up knowing: a picture, a reply, an error (with its shape checked), or nothing
 * because it hung up. Streams are read to their end.
 */

export type ClientName = "images" | "images-stream" | "edits" | "seed" | "seed-stream" | "chat" | "chat-stream" | "graph-stream";

export const allClients: readonly ClientName[] = ["images", "images-stream", "edits", "seed", "seed-stream", "chat", "chat-stream", "graph-stream"];

export interface ClientResult {
  client: ClientName;
  status: number;
  kind: "image" | "reply" | "error" | "aborted";
  /** For errors: what the client is told, and a shape problem if the error is malformed. */
  error?: { message: string; code: string | null; shapeProblem: string | undefined };
  /** Warnings the client can see (seed API `warnings`, status lines, graph outcome). */
  warnings: string[];
  /** What a client sees as the prompt used (revised_prompt, seed API prompt...), when shown. */
  promptShown?: string | undefined;
  text: string;
}

export interface ClientOptions {
  prompt?: string;
  refine?: boolean;
  signal?: AbortSignal;
  /** Extra body fields (steps...). */
  extra?: Record<string, unknown>;
  /** Chat clients: the message (default "draw <prompt>"). */
  chatMessage?: string;
}

const json = { "Content-Type": "application/json" };
const tinyPng = makePng(64, 64);

export async function callClient(baseUrl: string, client: ClientName, options: ClientOptions = {}): Promise<ClientResult> {
  const prompt = options.prompt ?? "a red fox in the snow";
  const refine = options.refine ?? true;
  const extra = options.extra ?? {};
  const drawMessage = options.chatMessage ?? `draw ${prompt}`;
  let res: Response;
  try {
    switch (client) {
      case "images":
      case "images-stream":
        res = await fetch(`${baseUrl}/v1/images/generations`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({ prompt, size: "64x64", steps: 2, refine, stream: client === "images-stream", ...extra }),
          signal: options.signal,
        });
        break;
      case "edits": {
        const form = new FormData();
        form.set("image", new Blob([new Uint8Array(tinyPng)], { type: "image/png" }), "in.png");
        form.set("prompt", prompt);
        form.set("size", "64x64");
        form.set("steps", "2");
        form.set("refine", String(refine));
        for (const [k, v] of Object.entries(extra)) form.set(k, String(v));
        res = await fetch(`${baseUrl}/v1/images/edits`, { method: "POST", body: form, signal: options.signal });
        break;
      }
      case "seed":
      case "seed-stream":
        res = await fetch(`${baseUrl}/generate${client === "seed-stream" ? "/stream" : ""}`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({ prompt, width: 64, height: 64, steps: 2, refine, ...extra }),
          signal: options.signal,
        });
        break;
      case "chat":
      case "chat-stream":
        res = await fetch(`${baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({
            model: "diffugen",
            stream: client === "chat-stream",
            size: "64x64",
            steps: 2,
            messages: [{ role: "user", content: drawMessage }],
            ...extra,
          }),
          signal: options.signal,
        });
        break;
      case "graph-stream":
        res = await fetch(`${baseUrl}/v1/graph/stream`, {
          method: "POST",
          headers: json,
          body: JSON.stringify({ request: { prompt, width: 64, height: 64, steps: 2, ...extra }, refinePrompt: refine }),
          signal: options.signal,
        });
        break;
    }
  } catch (err) {
    if (options.signal?.aborted) return { client, status: 0, kind: "aborted", warnings: [], text: "" };
    throw err;
  }
  let text: string;
  try {
    text = await res.text();
  } catch (err) {
    if (options.signal?.aborted) return { client, status: res.status, kind: "aborted", warnings: [], text: "" };
    throw err;
  }
  return interpret(client, res.status, res.headers.get("content-type") ?? "", text);
}

function interpret(client: ClientName, status: number, contentType: string, text: string): ClientResult {
  const base = { client, status, text, warnings: [] as string[] };
  const dialect = client === "seed" || client === "seed-stream" ? "diffugen" : "openai";
  if (!contentType.includes("text/event-stream")) {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return { ...base, kind: "error", error: { message: text, code: null, shapeProblem: `not JSON: ${text.slice(0, 200)}` } };
    }
    if (status >= 400) {
      const b = body as { error?: unknown; code?: unknown };
      const message = dialect === "diffugen" ? String(b.error) : String((b.error as { message?: unknown } | undefined)?.message);
      const code = dialect === "diffugen" ? (b.code as string | null) : ((b.error as { code?: string | null } | undefined)?.code ?? null);
      return { ...base, kind: "error", error: { message, code, shapeProblem: errorShapeProblem(body, dialect) } };
    }
    return nonStreamingSuccess(base, client, body);
  }
  return streamResult(base, client, text);
}

function nonStreamingSuccess(base: Omit<ClientResult, "kind">, client: ClientName, body: unknown): ClientResult {
  const b = body as Record<string, unknown>;
  if (client === "seed") {
    const warnings = Array.isArray(b.warnings) ? (b.warnings as string[]) : [];
    return { ...base, kind: b.success === true && typeof b.image_path === "string" ? "image" : "error", warnings, promptShown: b.prompt as string };
  }
  if (client === "chat") {
    const message = (b.choices as { message: { content: string; images?: unknown[]; reasoning_content?: string } }[] | undefined)?.[0]?.message;
    const kind = message?.images && message.images.length > 0 ? "image" : "reply";
    return { ...base, kind, warnings: [], promptShown: message?.reasoning_content };
  }
  const data = (b.data as { b64_json?: string; revised_prompt?: string }[] | undefined) ?? [];
  return { ...base, kind: data.length > 0 && typeof data[0]?.b64_json === "string" ? "image" : "error", promptShown: data[0]?.revised_prompt };
}

function streamResult(base: Omit<ClientResult, "kind">, client: ClientName, text: string): ClientResult {
  const { messages } = parseSse(text);
  const warnings: string[] = [];
  const parsed = messages.map((m) => {
    if (m.data === "[DONE]") return { event: m.event, data: {} as Record<string, unknown>, done: true };
    let data: unknown;
    try {
      data = JSON.parse(m.data);
    } catch {
      data = { unparsable: m.data };
    }
    const record = data !== null && typeof data === "object" && !Array.isArray(data) ? (data as Record<string, unknown>) : { value: data };
    return { event: m.event, data: record, done: false };
  });
  const error = (message: string, code: string | null, shapeProblem: string | undefined): ClientResult => ({
    ...base,
    kind: "error",
    error: { message, code, shapeProblem },
    warnings,
  });
  switch (client) {
    case "images-stream": {
      for (const m of parsed) {
        if (m.data.type === "diffugen.progress" && /skipped|not reachable|could not/i.test(String(m.data.message))) warnings.push(String(m.data.message));
      }
      const failed = parsed.find((m) => m.data.type === "error");
      if (failed) {
        const e = failed.data.error as { message?: string; code?: string | null } | undefined;
        return error(String(e?.message), e?.code ?? null, failed.event === "error" ? errorShapeProblem({ error: failed.data.error }, "openai") : "error data without `event: error`");
      }
      const done = parsed.find((m) => m.data.type === "image_generation.completed");
      return done ? { ...base, kind: "image", warnings, promptShown: done.data.revised_prompt as string | undefined } : error("stream ended with neither an image nor an error", null, "no final event");
    }
    case "seed-stream": {
      for (const m of parsed) {
        if (m.event === "progress" && /skipped|not reachable|could not/i.test(String(m.data.message))) warnings.push(String(m.data.message));
      }
      const failed = parsed.find((m) => m.event === "error");
      if (failed) {
        const message = failed.data.error;
        const ok = typeof message === "string" && message.trim() !== "" && failed.data.phase === "error";
        return error(String(message), (failed.data.code as string | null | undefined) ?? null, ok ? undefined : `error event ${JSON.stringify(failed.data)}`);
      }
      const done = parsed.find((m) => m.event === "done");
      if (!done) return error("stream ended with neither done nor error", null, "no final event");
      const w = done.data.warnings;
      if (Array.isArray(w)) warnings.push(...(w as string[]));
      return { ...base, kind: done.data.success === false ? "error" : "image", warnings, promptShown: done.data.prompt as string | undefined };
    }
    case "chat-stream": {
      let reasoning = "";
      let images = 0;
      for (const m of parsed) {
        const event = m.data.event as { type?: string; data?: { description?: string } } | undefined;
        if (event?.type === "status" && /skipped|not reachable|unavailable|could not/i.test(event.data?.description ?? "")) warnings.push(event.data!.description!);
        const delta = (m.data.choices as { delta?: { reasoning_content?: string; images?: unknown[] } }[] | undefined)?.[0]?.delta;
        if (delta?.reasoning_content) reasoning += delta.reasoning_content;
        if (delta?.images) images += delta.images.length;
      }
      const failed = parsed.find((m) => "error" in m.data);
      const endsWithDone = parsed.at(-1)?.done === true;
      if (failed) {
        const e = failed.data.error as { message?: string; code?: string | null } | undefined;
        const problem = errorShapeProblem({ error: failed.data.error }, "openai") ?? (endsWithDone ? undefined : "no [DONE] after the error");
        return error(String(e?.message), e?.code ?? null, problem);
      }
      if (!endsWithDone) return error("stream ended without [DONE]", null, "no [DONE]");
      return { ...base, kind: images > 0 ? "image" : "reply", warnings, promptShown: reasoning };
    }
    case "graph-stream": {
      for (const m of parsed) {
        // The LLM reload comes after the answer: its warning is a `custom` event, not in the outcome.
        if (m.event === "custom" && m.data.kind === "warning" && typeof m.data.message === "string") warnings.push(m.data.message);
      }
      const end = parsed.find((m) => m.event === "end");
      const outcome = end?.data.outcome as { kind?: string; error?: { code?: string; message?: string }; warnings?: string[] } | null | undefined;
      if (Array.isArray(outcome?.warnings)) warnings.push(...outcome.warnings.filter((w) => !warnings.includes(w)));
      if (!end || !outcome) {
        const failed = parsed.find((m) => m.event === "error");
        return error(String(failed?.data.error ?? "stream ended without an outcome"), null, end ? undefined : "no end event");
      }
      if (outcome.kind === "failed") {
        const ok = typeof outcome.error?.message === "string" && typeof outcome.error.code === "string";
        return error(String(outcome.error?.message), outcome.error?.code ?? null, ok ? undefined : `outcome ${JSON.stringify(outcome)}`);
      }
      return { ...base, kind: outcome.kind === "images" ? "image" : "reply", warnings };
    }
    default:
      return error(`unexpected event stream for ${client}`, null, "unexpected stream");
  }
}
