import type { Ollama } from "ollama";
import { describeCause, ollamaRequestFailure } from "./errors.js";
import { findNvidiaSmi, readFreeVramMiB } from "./nvidia-smi.js";
import { createOllamaClient, sameModel, type LlmConfig } from "./ollama-client.js";

/**
 * What Ollama holds and runs, read-only: the models in memory (/api/ps), its version,
 * free VRAM. /health and `diffugen status` ask it; it never loads or unloads anything,
 * so asking it cannot break the GPU invariant. Taking models out of VRAM and putting the
 * LLM back is OllamaResidency's job, and only the GPU scheduler holds one of those.
 */

export interface ResidentModel {
  name: string;
  sizeBytes: number;
  sizeVramBytes: number;
  /** size_vram == size: no layer runs on the CPU. */
  fullyOnGpu: boolean;
  expiresAt: string | undefined;
  contextLength: number | undefined;
}

export interface OllamaProbeOptions {
  /** Timeout of one small request (/api/ps, /api/version). Default 5 s. */
  requestTimeoutMs?: number;
  /** Environment used to look nvidia-smi up on PATH. */
  env?: NodeJS.ProcessEnv;
}

export interface OllamaHealth {
  reachable: boolean;
  baseUrl: string;
  version?: string | undefined;
  model: string;
  /** Whether /api/tags lists the configured model; undefined when it could not be read. */
  modelInstalled?: boolean | undefined;
  error?: string | undefined;
  latencyMs: number;
}

export class OllamaProbe {
  private nvidiaSmiBin: string | null | undefined;
  private readonly requestTimeoutMs: number;
  private readonly env: NodeJS.ProcessEnv;

  constructor(
    private readonly llm: LlmConfig,
    options: OllamaProbeOptions = {},
  ) {
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
    this.env = options.env ?? process.env;
  }

  /** Models Ollama holds now (GET /api/ps). Throws OllamaUnreachableError when it is down. */
  async listResident(signal?: AbortSignal): Promise<ResidentModel[]> {
    try {
      return await readResident(createOllamaClient(this.llm.baseUrl, { signal, timeoutMs: this.requestTimeoutMs }));
    } catch (err) {
      throw ollamaRequestFailure(err, signal, this.llm.baseUrl);
    }
  }

  /** Ollama's version (GET /api/version). Throws OllamaUnreachableError when it is down. */
  async version(signal?: AbortSignal): Promise<string> {
    try {
      return (await createOllamaClient(this.llm.baseUrl, { signal, timeoutMs: this.requestTimeoutMs }).version()).version;
    } catch (err) {
      throw ollamaRequestFailure(err, signal, this.llm.baseUrl);
    }
  }

  /** Free VRAM of the first GPU in MiB; undefined without nvidia-smi. */
  async freeVramMiB(signal?: AbortSignal): Promise<number | undefined> {
    const bin = this.nvidiaSmi();
    return bin === undefined ? undefined : readFreeVramMiB(bin, { signal });
  }

  /** nvidia-smi: the configured path, else the one on PATH, else none (looked up once). */
  private nvidiaSmi(): string | undefined {
    if (this.nvidiaSmiBin === undefined) this.nvidiaSmiBin = findNvidiaSmi(this.llm.nvidiaSmi, this.env) ?? null;
    return this.nvidiaSmiBin ?? undefined;
  }
}

/**
 * GET /api/ps with `client`, as ResidentModel[]. Errors are the client's own, untranslated:
 * OllamaResidency polls with it and tells a refused connection from other failures itself.
 */
export async function readResident(client: Ollama): Promise<ResidentModel[]> {
  const { models } = await client.ps();
  return (models ?? []).map((m) => {
    const raw = m as typeof m & { context_length?: number };
    const size = Number(m.size ?? 0);
    const sizeVram = Number(m.size_vram ?? 0);
    return {
      name: m.name || m.model,
      sizeBytes: size,
      sizeVramBytes: sizeVram,
      fullyOnGpu: sizeVram >= size,
      expiresAt: m.expires_at === undefined ? undefined : String(m.expires_at),
      contextLength: typeof raw.context_length === "number" ? raw.context_length : undefined,
    };
  });
}

/** Is Ollama up, which version, and is the configured model installed? Never throws. */
export async function checkOllama(
  llm: Pick<LlmConfig, "baseUrl" | "model">,
  opts: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<OllamaHealth> {
  const started = Date.now();
  const client = createOllamaClient(llm.baseUrl, { signal: opts.signal, timeoutMs: opts.timeoutMs ?? 3_000 });
  const base = { baseUrl: llm.baseUrl, model: llm.model };
  let version: string;
  try {
    version = (await client.version()).version;
  } catch (err) {
    return { ...base, reachable: false, error: describeCause(err), latencyMs: Date.now() - started };
  }
  try {
    const { models } = await client.list();
    const modelInstalled = (models ?? []).some((m) => sameModel(m.name || m.model, llm.model));
    return {
      ...base,
      reachable: true,
      version,
      modelInstalled,
      ...(modelInstalled ? {} : { error: `model ${llm.model} is not installed: ollama pull ${llm.model}` }),
      latencyMs: Date.now() - started,
    };
  } catch (err) {
    return { ...base, reachable: true, version, error: describeCause(err), latencyMs: Date.now() - started };
  }
}
