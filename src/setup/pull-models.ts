import { existsSync } from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import type { ModelEntry, ModelFileRole, ModelRegistry } from "../models/index.js";
import { downloadFile, type DownloadResult } from "./download.js";
import {
  DownloadAbortedError,
  DownloadInterruptedError,
  DownloadNetworkError,
  HttpStatusError,
} from "./errors.js";
import { authHeadersFor, effectiveUrl, gatedAdvice, isHuggingFaceUrl, type HfEnv } from "./hugging-face.js";
import { sourceFor, type FileSource, type SourceCatalog } from "./model-sources.js";

/** One file of a registry entry: where it must be, whether it is, where it can come from. */
export interface ModelFileStatus {
  role: ModelFileRole;
  path: string;
  present: boolean;
  /** Undefined when no source is known (a MODELS_CONFIG entry without `sources`). */
  source: FileSource | undefined;
  /** The URL that will actually be fetched (HF_ENDPOINT applied). */
  url: string | undefined;
}

export function modelFileStatus(registry: ModelRegistry, entry: ModelEntry, catalog: SourceCatalog, hf: HfEnv): ModelFileStatus[] {
  return registry.files(entry).map((file) => {
    const source = sourceFor(catalog, entry, file.role);
    return {
      role: file.role,
      path: file.path,
      present: existsSync(file.path),
      source,
      url: source ? effectiveUrl(source.url, hf) : undefined,
    };
  });
}

/** A pull failed for a reason the user can act on; the message says what to do. */
export class PullError extends Error {
  constructor(
    message: string,
    readonly file: ModelFileStatus | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "PullError";
  }
}

export interface PullReporter {
  /** A file is about to be fetched (`index` counts from 1 among the files to fetch). */
  start?(file: ModelFileStatus, index: number, count: number): void;
  progress?(file: ModelFileStatus, received: number, total: number | undefined, bytesPerSec: number): void;
  done?(file: ModelFileStatus, result: DownloadResult): void;
  /** A transient failure; the download resumes after `delayMs`. */
  retry?(file: ModelFileStatus, error: Error, attempt: number, delayMs: number): void;
}

export interface PullOptions {
  hf: HfEnv;
  signal?: AbortSignal | undefined;
  reporter?: PullReporter | undefined;
  /** Extra attempts after a broken connection or a 5xx/429, each resuming the `.part`. */
  retries?: number | undefined;
  retryDelayMs?: number | undefined;
}

export interface PullResult {
  fetched: { file: ModelFileStatus; result: DownloadResult }[];
  alreadyPresent: ModelFileStatus[];
}

/**
 * Fetches every missing file of `entry` to where the registry expects it. Files shared with
 * other models (ae.safetensors...) are fetched once. Throws PullError before fetching anything
 * when a missing file has no known source; a failed download throws PullError naming the
 * file, with the HF_TOKEN advice on a 401/403 from Hugging Face.
 */
export async function pullModel(
  registry: ModelRegistry,
  entry: ModelEntry,
  catalog: SourceCatalog,
  options: PullOptions,
): Promise<PullResult> {
  const files = modelFileStatus(registry, entry, catalog, options.hf);
  const seen = new Set<string>();
  const missing = files.filter((f) => !f.present && !seen.has(f.path) && seen.add(f.path));
  const unknown = missing.filter((f) => !f.source);
  if (unknown.length > 0) {
    throw new PullError(
      `no download source is known for ${unknown.map((f) => `${entry.name} ${f.role} (${f.path})`).join(", ")}: ` +
        `add "sources": { "${unknown[0]!.role}": "https://..." } to the entry in MODELS_CONFIG, or put the file there yourself`,
      unknown[0],
    );
  }
  const result: PullResult = { fetched: [], alreadyPresent: files.filter((f) => f.present) };
  for (const [i, file] of missing.entries()) {
    options.reporter?.start?.(file, i + 1, missing.length);
    const download = await downloadWithRetries(file, options);
    options.reporter?.done?.(file, download);
    result.fetched.push({ file, result: download });
  }
  return result;
}

async function downloadWithRetries(file: ModelFileStatus, options: PullOptions): Promise<DownloadResult> {
  const source = file.source!;
  const url = file.url!;
  const retries = options.retries ?? 3;
  const baseDelay = options.retryDelayMs ?? 2_000;
  await fsp.mkdir(path.dirname(file.path), { recursive: true });
  for (let attempt = 0; ; attempt++) {
    try {
      return await downloadFile(url, file.path, {
        sha256: source.sha256,
        expectedBytes: source.sizeBytes,
        signal: options.signal,
        headers: authHeadersFor(url, options.hf),
        onProgress: (received, total, rate) => options.reporter?.progress?.(file, received, total, rate),
      });
    } catch (err) {
      if (err instanceof DownloadAbortedError) throw err;
      const transient =
        err instanceof DownloadInterruptedError ||
        err instanceof DownloadNetworkError ||
        (err instanceof HttpStatusError && (err.status >= 500 || err.status === 429));
      if (transient && attempt < retries && !options.signal?.aborted) {
        const delay = baseDelay * 2 ** attempt;
        options.reporter?.retry?.(file, err as Error, attempt + 1, delay);
        await sleep(delay, options.signal);
        continue;
      }
      throw explain(err, file, options.hf);
    }
  }
}

function explain(err: unknown, file: ModelFileStatus, hf: HfEnv): Error {
  if (err instanceof HttpStatusError && (err.status === 401 || err.status === 403) && (isHuggingFaceUrl(err.url, hf) || file.source?.gated)) {
    return new PullError(`${file.role} (${path.basename(file.path)}): ${gatedAdvice(err.url, err.status, hf)}`, file, { cause: err });
  }
  if (err instanceof HttpStatusError && err.status === 404) {
    return new PullError(
      `${file.role} (${path.basename(file.path)}): ${err.message}: the file is not at that URL (moved or renamed?); ` +
        `set another one with "sources" in MODELS_CONFIG`,
      file,
      { cause: err },
    );
  }
  if (err instanceof Error) return new PullError(`${file.role} (${path.basename(file.path)}): ${err.message}`, file, { cause: err });
  return new PullError(String(err), file);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
