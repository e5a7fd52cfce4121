import type { Ollama } from "ollama";
import type { LlmResidency, ReloadReport, UnloadReport } from "../gpu/llm-residency.js";
import { UnloadTimeoutError, describeCause, httpStatusOf, isUnreachable, ollamaRequestFailure } from "./errors.js";
import type { LlmLogger } from "./logger.js";
import { createOllamaClient, llmModelOptions, sameModel, sleep, type LlmConfig } from "./ollama-client.js";
import { OllamaProbe, readResident, type OllamaProbeOptions, type ResidentModel } from "./ollama-probe.js";

/**
 * The LLM's residency in VRAM, as the GPU scheduler drives it: take every model out of
 * VRAM and prove it, put the configured LLM back. The scheduler is the only caller and
 * owns the decision of when (and where the LLM is: its LlmState); this owns the how.
 * Read-only questions (what is resident, free VRAM) go through an OllamaProbe, which
 * /health and `diffugen status` use without being able to unload anything.
 *
 * Ollama's unload is asynchronous: the unload call only marks the runner expired and
 * returns. unloadAll() therefore resolves only once /api/ps no longer lists the models,
 * and rejects with UnloadTimeoutError when they will not leave.
 */

export interface OllamaResidencyOptions extends OllamaProbeOptions {
  /** Where an unreachable Ollama or a model that will not leave is told (warnings always show). */
  logger: LlmLogger;
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
}

const VRAM_SETTLE_STEP_MS = 100;
const VRAM_SETTLE_TOLERANCE_MIB = 64;
/** Consecutive refused polls after which Ollama counts as stopped (and holding nothing). */
const REFUSED_POLLS_MEAN_STOPPED = 2;
/** An expires_at this much later than our accepted unload means the model was loaded again. */
const RELOADED_SLACK_MS = 1_000;

export class OllamaResidency implements LlmResidency {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly probe: OllamaProbe;
  private readonly logger: LlmLogger;
  private readonly requestTimeoutMs: number;
  private readonly loadTimeoutMs: number;
  private readonly pollInitialMs: number;
  private readonly pollMaxMs: number;
  private readonly vramSettleMs: number;

  constructor(
    private readonly llm: LlmConfig,
    options: OllamaResidencyOptions,
  ) {
    this.logger = options.logger;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
    this.loadTimeoutMs = options.loadTimeoutMs ?? 120_000;
    this.pollInitialMs = options.pollInitialMs ?? 50;
    // Capped low: a poll of /api/ps is a few hundred bytes of JSON, and every pause is GPU
    // time lost after the drop (npm run bench: 250 ms cost ~155 ms per swap at a 200 ms linger).
    this.pollMaxMs = options.pollMaxMs ?? 100;
    this.vramSettleMs = options.vramSettleMs ?? 2_000;
    this.probe = new OllamaProbe(llm, { requestTimeoutMs: this.requestTimeoutMs, env: options.env ?? process.env });
  }

  /**
   * Unloads every resident model and resolves once /api/ps lists none of them (models
   * that appear meanwhile are unloaded too). Ollama unreachable: resolves
   * `{reachable:false}`, since a stopped Ollama holds no VRAM.
   */
  unloadAll(signal?: AbortSignal): Promise<UnloadReport> {
    return this.exclusive(() => this.unloadAllNow(signal));
  }

  /**
   * Loads the configured LLM with the configured keep_alive and the same options chat
   * calls use, then checks /api/ps that it sits entirely in VRAM.
   */
  reload(signal?: AbortSignal): Promise<ReloadReport> {
    return this.exclusive(() => this.reloadNow(signal));
  }

  private async unloadAllNow(signal: AbortSignal | undefined): Promise<UnloadReport> {
    signal?.throwIfAborted();
    const started = Date.now();
    const deadline = started + this.llm.unloadTimeoutMs;
    const remaining = () => deadline - Date.now();

    let listed: ResidentModel[];
    try {
      listed = await readResident(this.client(signal, this.requestTimeoutMs));
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (!isUnreachable(err)) throw ollamaRequestFailure(err, signal, this.llm.baseUrl);
      this.logger.warn(`Ollama is not reachable at ${this.llm.baseUrl} (${describeCause(err)}): nothing to unload`);
      return { reachable: false, unloaded: [], durationMs: Date.now() - started, freeVramMiB: await this.probe.freeVramMiB(signal) };
    }
    if (listed.length === 0) {
      return { reachable: true, unloaded: [], durationMs: Date.now() - started, freeVramMiB: await this.probe.freeVramMiB(signal) };
    }

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
        stillListed = await readResident(this.client(signal, Math.min(this.requestTimeoutMs, Math.max(remaining(), 250))));
        refusedPolls = 0;
        lastError = undefined;
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        lastError = err;
        refusedPolls = isUnreachable(err) ? refusedPolls + 1 : 0;
        if (refusedPolls >= REFUSED_POLLS_MEAN_STOPPED) {
          this.logger.warn(
            `Ollama stopped answering while unloading ${[...targets].join(", ")} (${describeCause(err)}); ` +
              `a stopped Ollama holds no VRAM`,
          );
          return { reachable: false, unloaded: [], durationMs: Date.now() - started, freeVramMiB: await this.probe.freeVramMiB(signal) };
        }
      }
      if (lastError === undefined) {
        if (stillListed.length === 0) break;
        // A model (re)loaded meanwhile by another Ollama client would run sd.cpp out of
        // memory just the same: unload it too. Failed unload calls are retried.
        await Promise.all(stillListed.filter(needsUnload).map((m) => requestUnload(m.name)));
      }
      if (remaining() <= 0) {
        const models = lastError === undefined ? stillListed.map((m) => m.name) : [...targets];
        throw new UnloadTimeoutError(models, this.llm.unloadTimeoutMs, lastError === undefined ? {} : { cause: lastError });
      }
      await sleep(Math.min(pause, remaining()), signal);
      pause = Math.min(pause * 2, this.pollMaxMs);
    }

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
      return report({ reachable: true, warning });
    }

    const options = llmModelOptions(this.llm);
    try {
      await this.client(signal, this.loadTimeoutMs).chat({
        model,
        messages: [],
        keep_alive: this.llm.keepAlive,
        ...(Object.keys(options).length > 0 ? { options } : {}),
      });
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (isUnreachable(err)) {
        const warning = `Ollama is not reachable at ${this.llm.baseUrl} (${describeCause(err)}); ${model} not reloaded`;
        this.logger.warn(warning);
        return report({ reachable: false, warning });
      }
      throw ollamaRequestFailure(err, signal, this.llm.baseUrl, model);
    }

    let resident: ResidentModel | undefined;
    try {
      resident = (await readResident(this.client(signal, this.requestTimeoutMs))).find((m) => sameModel(m.name, model));
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
    let last = await this.probe.freeVramMiB(signal);
    if (last === undefined || this.vramSettleMs <= 0) return last;
    const until = Date.now() + this.vramSettleMs;
    while (Date.now() < until) {
      await sleep(VRAM_SETTLE_STEP_MS, signal);
      const now = await this.probe.freeVramMiB(signal);
      if (now === undefined) return last;
      const settled = Math.abs(now - last) < VRAM_SETTLE_TOLERANCE_MIB;
      last = now;
      if (settled) break;
    }
    return last;
  }

  private client(signal: AbortSignal | undefined, timeoutMs: number): Ollama {
    return createOllamaClient(this.llm.baseUrl, { signal, timeoutMs });
  }

  /** One load/unload at a time: an unload racing a reload could leave either outcome. */
  private exclusive<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function isZeroKeepAlive(keepAlive: number | string): boolean {
  if (typeof keepAlive === "number") return keepAlive === 0;
  return /^0+(\.0+)?(ms|s|m|h)?$/.test(keepAlive.trim());
}

function mib(bytes: number): number {
  return Math.round(bytes / (1024 * 1024));
}
