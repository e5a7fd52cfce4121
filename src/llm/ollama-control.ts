import type { Ollama } from "ollama";
import type { LlmResidency, ReloadReport, UnloadReport } from "../gpu/llm-residency.js";
import {
  LlmModelNotFoundError,
  OllamaRequestError,
  OllamaUnreachableError,
  UnloadTimeoutError,
  describeCause,
  httpStatusOf,
  isUnreachable,
} from "./errors.js";
import { consoleLlmLogger, type LlmLogger } from "./logger.js";
import { findOnPath, readFreeVramMiB } from "./nvidia-smi.js";
import { createOllamaClient, llmModelOptions, sameModel, sleep, type LlmConfig } from "./ollama-client.js";

/**
 * The Ollama control plane: what is resident (/api/ps), take it all out of VRAM and
 * prove it, put the configured LLM back. The GPU scheduler is the only caller; it owns
 * the decision of when, this owns the how.
 *
 * Ollama's unload is asynchronous: the unload call only marks the runner expired and
 * returns. unloadAll() therefore resolves only once /api/ps no longer lists the models,
 * and rejects with UnloadTimeoutError when they will not leave.
 */

/** What this control plane last did to Ollama; for status pages and logs. */
export type LlmState = "unknown" | "loading" | "loaded" | "unloading" | "unloaded" | "unreachable";

export interface ResidentModel {
  name: string;
  sizeBytes: number;
  sizeVramBytes: number;
  /** size_vram == size: no layer runs on the CPU. */
  fullyOnGpu: boolean;
  expiresAt: string | undefined;
  contextLength: number | undefined;
}

export interface OllamaControlOptions {
  logger?: LlmLogger;
  /** Timeout of one small request (/api/ps, an unload call, /api/version). Default 5 s. */
  requestTimeoutMs?: number;
  /** Timeout of loading the LLM in reload(); loading from disk can be slow. Default 120 s. */
  loadTimeoutMs?: number;
  /** First and largest pause between /api/ps polls while waiting for an unload. */
  pollInitialMs?: number;
  pollMaxMs?: number;
  /**
   * With nvidia-smi available, wait up to this long after /api/ps is empty for free VRAM
   * to stop rising: Ollama drops a runner from /api/ps before the driver has reported
   * its memory free. Default 2000 ms; 0 disables.
   */
  vramSettleMs?: number;
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

const VRAM_SETTLE_STEP_MS = 100;
const VRAM_SETTLE_TOLERANCE_MIB = 64;
/** Consecutive refused polls after which Ollama counts as stopped (and holding nothing). */
const REFUSED_POLLS_MEAN_STOPPED = 2;
/** An expires_at this much later than our accepted unload means the model was loaded again. */
const RELOADED_SLACK_MS = 1_000;

export class OllamaControl implements LlmResidency {
  private currentState: LlmState = "unknown";
  private queue: Promise<unknown> = Promise.resolve();
  private nvidiaSmiBin: string | null | undefined;
  private readonly logger: LlmLogger;
  private readonly requestTimeoutMs: number;
  private readonly loadTimeoutMs: number;
  private readonly pollInitialMs: number;
  private readonly pollMaxMs: number;
  private readonly vramSettleMs: number;
  private readonly env: NodeJS.ProcessEnv;

  constructor(
    private readonly llm: LlmConfig,
    options: OllamaControlOptions = {},
  ) {
    this.logger = options.logger ?? consoleLlmLogger;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
    this.loadTimeoutMs = options.loadTimeoutMs ?? 120_000;
    this.pollInitialMs = options.pollInitialMs ?? 50;
    // Capped low: a poll of /api/ps is a few hundred bytes of JSON, and every pause is GPU
    // time lost after the drop (npm run bench: 250 ms cost ~155 ms per swap at a 200 ms linger).
    this.pollMaxMs = options.pollMaxMs ?? 100;
    this.vramSettleMs = options.vramSettleMs ?? 2_000;
    this.env = options.env ?? process.env;
  }

  get state(): LlmState {
    return this.currentState;
  }

  /** Models Ollama holds now (GET /api/ps). Throws OllamaUnreachableError when it is down. */
  async listResident(signal?: AbortSignal): Promise<ResidentModel[]> {
    try {
      return await this.ps(this.client(signal, this.requestTimeoutMs));
    } catch (err) {
      throw this.translate(err, signal);
    }
  }

  /** Ollama's version (GET /api/version). Throws OllamaUnreachableError when it is down. */
  async version(signal?: AbortSignal): Promise<string> {
    try {
      return (await this.client(signal, this.requestTimeoutMs).version()).version;
    } catch (err) {
      throw this.translate(err, signal);
    }
  }

  /** Free VRAM of the first GPU in MiB; undefined without nvidia-smi. */
  async freeVramMiB(signal?: AbortSignal): Promise<number | undefined> {
    const bin = this.nvidiaSmi();
    return bin === undefined ? undefined : readFreeVramMiB(bin, { signal });
  }

  /**
   * Unloads every resident model and resolves once /api/ps lists none of them (models
   * that appear meanwhile are unloaded too). Ollama unreachable: resolves
   * `{reachable:false}`, since a stopped Ollama holds no VRAM.
   */
  unloadAll(signal?: AbortSignal): Promise<UnloadReport> {
    return this.exclusive(() => this.leavingNoHalfState("unloading", () => this.unloadAllNow(signal)));
  }

  /**
   * Loads the configured LLM with the configured keep_alive and the same options chat
   * calls use, then checks /api/ps that it sits entirely in VRAM.
   */
  reload(signal?: AbortSignal): Promise<ReloadReport> {
    return this.exclusive(() => this.leavingNoHalfState("loading", () => this.reloadNow(signal)));
  }

  private async unloadAllNow(signal: AbortSignal | undefined): Promise<UnloadReport> {
    signal?.throwIfAborted();
    const started = Date.now();
    const deadline = started + this.llm.unloadTimeoutMs;
    const remaining = () => deadline - Date.now();

    let listed: ResidentModel[];
    try {
      listed = await this.ps(this.client(signal, this.requestTimeoutMs));
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (!isUnreachable(err)) {
        this.setState("unknown");
        throw this.translate(err, signal);
      }
      this.setState("unreachable");
      this.logger.warn(`Ollama is not reachable at ${this.llm.baseUrl} (${describeCause(err)}): nothing to unload`);
      return { reachable: false, unloaded: [], durationMs: Date.now() - started, freeVramMiB: await this.freeVramMiB(signal) };
    }
    if (listed.length === 0) {
      this.setState("unloaded");
      return { reachable: true, unloaded: [], durationMs: Date.now() - started, freeVramMiB: await this.freeVramMiB(signal) };
    }

    this.setState("unloading");
    const targets = new Set<string>();
    /** When Ollama accepted our unload of each model. */
    const unloadAcceptedAt = new Map<string, number>();
    const requestUnload = async (model: string) => {
      targets.add(model);
      const sentAt = Date.now();
      try {
        const client = this.client(signal, Math.min(this.requestTimeoutMs, Math.max(remaining(), 250)));
        await client.chat({ model, messages: [], keep_alive: 0 });
        unloadAcceptedAt.set(model, sentAt);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        // 404: deleted since /api/ps listed it; the poll below still has the last word.
        if (httpStatusOf(err) === 404) unloadAcceptedAt.set(model, sentAt);
        else this.logger.warn(`unload of ${model} failed (${describeCause(err)}); will retry`);
      }
    };
    /**
     * Ask (again) when we never did, the ask failed, or the model was loaded again after
     * it: Ollama sets expires_at to "now" when it accepts an unload, so an expiry later
     * than our request means someone else's request reloaded it meanwhile.
     */
    const needsUnload = (m: ResidentModel) => {
      const acceptedAt = unloadAcceptedAt.get(m.name);
      if (acceptedAt === undefined) return true;
      const expiresAt = m.expiresAt === undefined ? NaN : Date.parse(m.expiresAt);
      return Number.isFinite(expiresAt) && expiresAt > acceptedAt + RELOADED_SLACK_MS;
    };
    await Promise.all(listed.map((m) => requestUnload(m.name)));

    let pause = this.pollInitialMs;
    let refusedPolls = 0;
    let lastError: unknown;
    let stillListed: ResidentModel[] = listed;
    for (;;) {
      try {
        stillListed = await this.ps(this.client(signal, Math.min(this.requestTimeoutMs, Math.max(remaining(), 250))));
        refusedPolls = 0;
        lastError = undefined;
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        lastError = err;
        refusedPolls = isUnreachable(err) ? refusedPolls + 1 : 0;
        if (refusedPolls >= REFUSED_POLLS_MEAN_STOPPED) {
          this.setState("unreachable");
          this.logger.warn(
            `Ollama stopped answering while unloading ${[...targets].join(", ")} (${describeCause(err)}); ` +
              `a stopped Ollama holds no VRAM`,
          );
          return { reachable: false, unloaded: [], durationMs: Date.now() - started, freeVramMiB: await this.freeVramMiB(signal) };
        }
      }
      if (lastError === undefined) {
        if (stillListed.length === 0) break;
        // A model (re)loaded meanwhile by another Ollama client would run sd.cpp out of
        // memory just the same: unload it too. Failed unload calls are retried.
        await Promise.all(stillListed.filter(needsUnload).map((m) => requestUnload(m.name)));
      }
      if (remaining() <= 0) {
        this.setState("unknown");
        const models = lastError === undefined ? stillListed.map((m) => m.name) : [...targets];
        throw new UnloadTimeoutError(models, this.llm.unloadTimeoutMs, lastError === undefined ? {} : { cause: lastError });
      }
      await sleep(Math.min(pause, remaining()), signal);
      pause = Math.min(pause * 2, this.pollMaxMs);
    }

    this.setState("unloaded");
    const freeVramMiB = await this.settledFreeVramMiB(signal);
    const durationMs = Date.now() - started;
    this.logger.info(`unloaded ${[...targets].join(", ")} in ${durationMs} ms`);
    return { reachable: true, unloaded: [...targets], durationMs, freeVramMiB };
  }

  private async reloadNow(signal: AbortSignal | undefined): Promise<ReloadReport> {
    signal?.throwIfAborted();
    const started = Date.now();
    const model = this.llm.model;
    const report = (r: Omit<ReloadReport, "model" | "durationMs">): ReloadReport => ({
      model,
      durationMs: Date.now() - started,
      ...r,
    });

    if (isZeroKeepAlive(this.llm.keepAlive)) {
      // keep_alive 0 with no messages IS the unload request: loading would unload.
      const warning = `LLM_KEEP_ALIVE is 0, so the LLM is not kept loaded; skipped reloading ${model}`;
      this.logger.warn(warning);
      this.setState("unloaded");
      return report({ reachable: true, warning });
    }

    this.setState("loading");
    const options = llmModelOptions(this.llm);
    try {
      await this.client(signal, this.loadTimeoutMs).chat({
        model,
        messages: [],
        keep_alive: this.llm.keepAlive,
        ...(Object.keys(options).length > 0 ? { options } : {}),
      });
    } catch (err) {
      if (signal?.aborted) {
        this.setState("unknown");
        throw signal.reason;
      }
      if (isUnreachable(err)) {
        this.setState("unreachable");
        const warning = `Ollama is not reachable at ${this.llm.baseUrl} (${describeCause(err)}); ${model} not reloaded`;
        this.logger.warn(warning);
        return report({ reachable: false, warning });
      }
      this.setState("unknown");
      throw this.translate(err, signal, true);
    }
    this.setState("loaded");

    let resident: ResidentModel | undefined;
    try {
      resident = (await this.ps(this.client(signal, this.requestTimeoutMs))).find((m) => sameModel(m.name, model));
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const warning = `${model} loaded, but /api/ps could not be read to check it is on the GPU (${describeCause(err)})`;
      this.logger.warn(warning);
      return report({ reachable: true, warning });
    }
    if (resident === undefined) {
      const warning = `${model} loaded, but /api/ps does not list it`;
      this.logger.warn(warning);
      return report({ reachable: true, warning });
    }
    if (!resident.fullyOnGpu) {
      const pct = resident.sizeBytes > 0 ? Math.round((100 * resident.sizeVramBytes) / resident.sizeBytes) : 0;
      const warning =
        `${model} is only ${pct}% on the GPU (${mib(resident.sizeVramBytes)} of ${mib(resident.sizeBytes)} MiB): ` +
        `the rest runs on the CPU and chats will be slow; lower LLM_NUM_CTX or use a smaller model`;
      this.logger.warn(warning);
      return report({ reachable: true, fullyOnGpu: false, warning });
    }
    return report({ reachable: true, fullyOnGpu: true });
  }

  /** Free VRAM once it stops rising (the driver frees a runner's memory a little late). */
  private async settledFreeVramMiB(signal: AbortSignal | undefined): Promise<number | undefined> {
    let last = await this.freeVramMiB(signal);
    if (last === undefined || this.vramSettleMs <= 0) return last;
    const until = Date.now() + this.vramSettleMs;
    while (Date.now() < until) {
      await sleep(VRAM_SETTLE_STEP_MS, signal);
      const now = await this.freeVramMiB(signal);
      if (now === undefined) return last;
      const settled = Math.abs(now - last) < VRAM_SETTLE_TOLERANCE_MIB;
      last = now;
      if (settled) break;
    }
    return last;
  }

  private async ps(client: Ollama): Promise<ResidentModel[]> {
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

  private client(signal: AbortSignal | undefined, timeoutMs: number): Ollama {
    return createOllamaClient(this.llm.baseUrl, { signal, timeoutMs });
  }

  /** nvidia-smi: the configured path, else the one on PATH, else none (looked up once). */
  private nvidiaSmi(): string | undefined {
    if (this.nvidiaSmiBin === undefined) this.nvidiaSmiBin = this.llm.nvidiaSmi ?? findOnPath("nvidia-smi", this.env) ?? null;
    return this.nvidiaSmiBin ?? undefined;
  }

  /** Our typed error for a failed request; `forModel`: a 404 means the LLM is not installed. */
  private translate(err: unknown, signal: AbortSignal | undefined, forModel = false): unknown {
    if (signal?.aborted) return signal.reason;
    if (isUnreachable(err)) return new OllamaUnreachableError(this.llm.baseUrl, { cause: err });
    const status = httpStatusOf(err);
    if (forModel && status === 404) return new LlmModelNotFoundError(this.llm.model, this.llm.baseUrl, { cause: err });
    return new OllamaRequestError(`Ollama request failed: ${describeCause(err)}`, status, { cause: err });
  }

  private setState(next: LlmState): void {
    if (next !== this.currentState) this.logger.info(`LLM ${this.currentState} -> ${next}`);
    this.currentState = next;
  }

  /** An abort or error in the middle of `transient` leaves the state "unknown", never stuck in it. */
  private async leavingNoHalfState<T>(transient: LlmState, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (this.currentState === transient) this.setState("unknown");
      throw err;
    }
  }

  /** One load/unload at a time: an unload racing a reload could leave either outcome. */
  private exclusive<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }
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

function isZeroKeepAlive(keepAlive: number | string): boolean {
  if (typeof keepAlive === "number") return keepAlive === 0;
  return /^0+(\.0+)?(ms|s|m|h)?$/.test(keepAlive.trim());
}

function mib(bytes: number): number {
  return Math.round(bytes / (1024 * 1024));
}
