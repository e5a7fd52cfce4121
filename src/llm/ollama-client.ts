import { Ollama, type Options } from "ollama";
import type { Config } from "../config/index.js";

/**
 * Helpers shared by the Ollama probe and residency and the prompt refiner, so both talk to Ollama
 * the same way: one place builds the model options (a different num_ctx between two
 * requests makes Ollama reload the model), one place builds clients whose requests an
 * AbortSignal can actually cancel.
 */

export type LlmConfig = Config["llm"];

/**
 * The `options` every request for the configured model carries. The load in
 * OllamaResidency.reload() and every ChatOllama call use exactly this, so the first chat
 * after a reload finds the runner it expects instead of reloading it.
 */
export function llmModelOptions(llm: Pick<LlmConfig, "numCtx">): Partial<Options> {
  return llm.numCtx === undefined ? {} : { num_ctx: llm.numCtx };
}

/**
 * An `ollama` client whose every HTTP request ends when `signal` aborts or after
 * `timeoutMs`. The client itself only cancels streams (and only through its own
 * abort()), so without this a hung Ollama would hang the caller, and a refinement the
 * caller gave up on would keep Ollama busy and delay the next unload.
 */
export function createOllamaClient(
  baseUrl: string,
  opts: { signal?: AbortSignal | undefined; timeoutMs?: number | undefined; fetch?: typeof fetch | undefined } = {},
): Ollama {
  return new Ollama({ host: baseUrl, fetch: abortableFetch(opts, opts.fetch) });
}

/** A fetch (`base`, default the global one) that also obeys `signal` and a per-request timeout. */
export function abortableFetch(opts: { signal?: AbortSignal | undefined; timeoutMs?: number | undefined }, base: typeof fetch = fetch): typeof fetch {
  return (input, init) => {
    const signals: AbortSignal[] = [];
    if (init?.signal) signals.push(init.signal);
    if (opts.signal) signals.push(opts.signal);
    if (opts.timeoutMs !== undefined) signals.push(AbortSignal.timeout(Math.max(1, Math.round(opts.timeoutMs))));
    const signal = signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals);
    return base(input, { ...init, signal });
  };
}

/** Ollama names a model without a tag `name:latest`; compare names the way it does. */
export function normalizeModelName(name: string): string {
  const trimmed = name.trim();
  const lastSlash = trimmed.lastIndexOf("/");
  return trimmed.slice(lastSlash + 1).includes(":") ? trimmed : `${trimmed}:latest`;
}

export function sameModel(a: string, b: string): boolean {
  return normalizeModelName(a) === normalizeModelName(b);
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
