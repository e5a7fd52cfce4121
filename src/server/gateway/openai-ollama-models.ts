import { z } from "zod";
import { callOllama } from "./upstream.js";

/**
 * Ollama's installed models as OpenAI model entries, for GET /v1/models: read from
 * /api/tags (a listing, it loads nothing, so it needs no GPU lease). An Ollama that is down,
 * slow or answering nonsense yields no entries rather than an error: DiffuGen's own models
 * are listed whatever Ollama does.
 */

export interface OllamaModelEntry {
  id: string;
  object: "model";
  /** Unix seconds: when the model was pulled or changed (`modified_at`). */
  created: number;
  owned_by: "ollama";
}

export type OllamaModelList = { ok: true; models: OllamaModelEntry[] } | { ok: false; reason: string; models: [] };

const tagsSchema = z.object({
  models: z.array(z.looseObject({ name: z.string().min(1), modified_at: z.string().optional() })).default([]),
});

/** A listing waits this long at most: a hung Ollama must not hang OpenWebUI's model list. */
export const ollamaListTimeoutMs = 3_000;

export async function listOllamaModels(
  baseUrl: string,
  options: { signal: AbortSignal; fallbackCreated: number; timeoutMs?: number },
): Promise<OllamaModelList> {
  const signal = AbortSignal.any([options.signal, AbortSignal.timeout(options.timeoutMs ?? ollamaListTimeoutMs)]);
  try {
    const res = await callOllama(baseUrl, { method: "GET", path: "/api/tags", headers: new Headers({ Accept: "application/json" }), body: null, signal });
    if (!res.ok) {
      await res.body?.cancel();
      return { ok: false, reason: `Ollama answered ${res.status} to /api/tags`, models: [] };
    }
    const parsed = tagsSchema.safeParse(await res.json());
    if (!parsed.success) return { ok: false, reason: "Ollama's /api/tags answer has no model list", models: [] };
    return {
      ok: true,
      models: parsed.data.models.map((model) => ({
        id: model.name,
        object: "model",
        created: unixSeconds(model.modified_at) ?? options.fallbackCreated,
        owned_by: "ollama",
      })),
    };
  } catch (err) {
    return { ok: false, reason: `Ollama is not reachable at ${baseUrl}: ${err instanceof Error ? err.message : String(err)}`, models: [] };
  }
}

function unixSeconds(timestamp: string | undefined): number | undefined {
  const ms = timestamp === undefined ? NaN : Date.parse(timestamp);
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}
