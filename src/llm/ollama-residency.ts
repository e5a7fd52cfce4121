import type { Ollama, Options } from "ollama";
import type { LlmResidency, ReloadReport, UnloadReport } from "../gpu/llm-residency.js";
import { OllamaConnectionLostError, UnloadTimeoutError, describeCause, httpStatusOf, isConnectionLost, isUnreachable, ollamaRequestFailure } from "./errors.js";
import type { LlmLogger } from "./logger.js";
import { findNvidiaSmi, readComputeApps } from "./nvidia-smi.js";
import { createOllamaClient, llmModelOptions, sameModel, sleep, type LlmConfig } from "./ollama-client.js";
import { OllamaProbe, readResident, type OllamaProbeOptions, type ResidentModel } from "./ollama-probe.js";
import { defaultUnloadPoll, UnloadPollSchedule, type UnloadPollOptions } from "./unload-poll.js";

/**
 * The LLM's residency in VRAM, as the GPU scheduler drives it: take every model out of
 * VRAM and prove it, put back what LLM_RESTORE says. The scheduler is the only caller and
 * owns the decision of when (and where the LLM is: its LlmState); this owns the how.
 * Read-only questions (what is resident, free VRAM) go through an OllamaProbe, which
 * /health and `diffugen status` use without being able to unload anything.
 *
 * Ollama's unload is asynchronous: the unload call only marks the runner expired and
 * returns. unloadAll() therefore resolves only once /api/ps no longer lists the models,
 * and rejects with UnloadTimeoutError when they will not leave.
 *
 * What comes back after a burst is what was there before it (LLM_RESTORE=previous):
 * unloadAll() notes the models /api/ps lists when it begins, and reload() loads those,
 * each with the context length it had, or LLM_MODEL when none was resident.
 * `default` always loads LLM_MODEL alone; `none` loads nothing and leaves VRAM free.
 */

export interface OllamaResidencyOptions extends OllamaProbeOptions {
  /** Where an unreachable Ollama or a model that will not leave is told (warnings always show). */
  logger: LlmLogger;
  /** Timeout of one small request (/api/ps, an unload call, /api/version). Default 5 s. */
  requestTimeoutMs?: number;
  /** Timeout of loading the LLM in reload(); loading from disk can be slow. Default 120 s. */
  loadTimeoutMs?: number;
  /**
   * The /api/ps poll while waiting for an unload (unload-poll.ts): every `pollFastMs`
   * (default 3) for the first `pollFastForMs` (default 500) after the unload call, while
   * Ollama is expected to drop the model; then from `pollInitialMs` (50) doubling to
   * `pollMaxMs` (100). `pollFastForMs: 0` is the back-off alone.
   */
  pollFastMs?: number;
  pollFastForMs?: number;
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
/**
 * An expires_at further away than this means "never": Ollama keeps a model loaded with a
 * negative keep_alive for the longest Go duration, so /api/ps shows a date ~292 years on.
 */
const FOREVER_AFTER_MS = 100 * 365 * 86_400_000;

/** A model to load in reload(). */
export interface RestoreTarget {
  name: string;
  /** LLM_MODEL: loaded with LLM_KEEP_ALIVE and LLM_NUM_CTX, as the chat calls send them. */
  configured: boolean;
  /** num_ctx to load it with: its context_length in /api/ps (other options than its own would reload it). */
  numCtx: number | undefined;
  /** keep_alive to load it with: the seconds it had left, -1 for forever; undefined: Ollama's default. */
  keepAlive: number | undefined;
}

export class OllamaResidency implements LlmResidency {
  private queue: Promise<unknown> = Promise.resolve();
  /** LLM_RESTORE=previous: what /api/ps listed when the last unload began, in the order to load it back. */
  private heldBefore: RestoreTarget[] = [];
  /**
   * An unload noted what to restore and no reload has finished since. An unload that finds
   * nothing then (the reload failed, or Ollama restarted) keeps the note, not an empty one.
   */
  private restorePending = false;
  /**
   * The configured LLM is in VRAM as far as we know: our reload put it there and no unload
   * of ours has begun since. Then the next unload sends its unload call at once (see
   * unloadAllNow), and it is restored after the burst even if /api/ps no longer showed it.
   */
  private configuredLoaded = false;
  private readonly probe: OllamaProbe;
  private readonly logger: LlmLogger;
  private readonly requestTimeoutMs: number;
  private readonly loadTimeoutMs: number;
  private readonly poll: UnloadPollOptions;
  private readonly vramSettleMs: number;
  private readonly env: NodeJS.ProcessEnv;

  constructor(
    private readonly llm: LlmConfig,
    options: OllamaResidencyOptions,
  ) {
    this.logger = options.logger;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
    this.loadTimeoutMs = options.loadTimeoutMs ?? 120_000;
    this.poll = {
      fastMs: options.pollFastMs ?? defaultUnloadPoll.fastMs,
      fastForMs: options.pollFastForMs ?? defaultUnloadPoll.fastForMs,
      initialMs: options.pollInitialMs ?? defaultUnloadPoll.initialMs,
      maxMs: options.pollMaxMs ?? defaultUnloadPoll.maxMs,
    };
    this.vramSettleMs = options.vramSettleMs ?? 2_000;
    this.env = options.env ?? process.env;
    this.probe = new OllamaProbe(llm, { requestTimeoutMs: this.requestTimeoutMs, env: options.env ?? process.env });
  }

  /**
   * Unloads every resident model and resolves once /api/ps lists none of them (models
   * that appear meanwhile are unloaded too). Ollama unreachable: resolves
   * `{reachable:false}`, since a stopped Ollama holds no VRAM. Ollama broke off the
   * connection: rejects with OllamaConnectionLostError, unless nvidia-smi answers and lists
   * no process holding GPU memory; then resolves `{reachable:false}` with a warning.
   */
  unloadAll(signal?: AbortSignal): Promise<UnloadReport> {
    return this.exclusive(() => this.unloadAllNow(signal));
  }

  /**
   * Loads back what LLM_RESTORE says, one model at a time, then checks /api/ps that each
   * sits entirely in VRAM. The configured LLM is loaded with the configured keep_alive and
   * the same options chat calls use; another model with its own context length. A model
   * that fails to load is reported and not retried; the others still load. Rejects only
   * when every model failed (the scheduler then counts a failed reload).
   */
  reload(signal?: AbortSignal): Promise<ReloadReport> {
    return this.exclusive(() => this.reloadNow(signal));
  }

  private async unloadAllNow(signal: AbortSignal | undefined): Promise<UnloadReport> {
    signal?.throwIfAborted();
    const started = Date.now();
    const deadline = started + this.llm.unloadTimeoutMs;
    const remaining = () => deadline - Date.now();

    // The LLM we loaded back after the last burst is nearly always the model to move out
    // (the refinement that just ran used it): its unload goes out now, beside the listing,
    // not one round trip and the run's bookkeeping after it. The listing may then already
    // show it expiring, or not at all; it counts as held before either way.
    const earlyUnload = this.configuredLoaded
      ? this.sendUnload(this.llm.model, signal, Math.min(this.requestTimeoutMs, Math.max(remaining(), 250)))
      : undefined;
    this.configuredLoaded = false;

    let listed: ResidentModel[];
    try {
      listed = await readResident(this.client(signal, this.requestTimeoutMs));
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      // Reset mid-request: Ollama was there and may be holding the LLM; never "nothing to unload".
      if (isConnectionLost(err)) {
        const lost = new OllamaConnectionLostError(this.llm.baseUrl, "unloading the LLM", { cause: err });
        const report = await this.drawAnywayIfVramFree(lost, err, started, signal);
        this.noteHeldBefore([], started);
        return report;
      }
      if (!isUnreachable(err)) throw ollamaRequestFailure(err, signal, this.llm.baseUrl);
      this.logger.warn(`Ollama is not reachable at ${this.llm.baseUrl} (${describeCause(err)}): nothing to unload`);
      this.noteHeldBefore([], started);
      return { reachable: false, unloaded: [], durationMs: Date.now() - started, freeVramMiB: await this.probe.freeVramMiB(signal) };
    }
    const early = earlyUnload && (await earlyUnload).acceptedAt;
    if (early !== undefined) listed = withConfiguredLlm(listed, this.llm.model);
    this.noteHeldBefore(listed, started);
    if (listed.length === 0) {
      return { reachable: true, unloaded: [], durationMs: Date.now() - started, freeVramMiB: await this.probe.freeVramMiB(signal) };
    }

    const targets = new Set<string>();
    /** When Ollama accepted our unload of each model. */
    const unloadAcceptedAt = new Map<string, number>();
    const requestUnload = async (model: string) => {
      targets.add(model);
      const sent = await this.sendUnload(model, signal, Math.min(this.requestTimeoutMs, Math.max(remaining(), 250)));
      if (signal?.aborted) throw signal.reason;
      if (sent.acceptedAt !== undefined) unloadAcceptedAt.set(model, sent.acceptedAt);
      else this.logger.warn(`unload of ${model} failed (${describeCause(sent.error)}); will retry`);
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
    const isConfigured = (m: ResidentModel) => sameModel(m.name, this.llm.model);
    if (early !== undefined) {
      // Sent before the listing and taken: not asked again.
      const name = listed.find(isConfigured)?.name ?? this.llm.model;
      targets.add(name);
      unloadAcceptedAt.set(name, early);
    }
    await Promise.all(listed.filter((m) => early === undefined || !isConfigured(m)).map((m) => requestUnload(m.name)));

    // The drop is expected from now on: look often, then back off (unload-poll.ts).
    const schedule = new UnloadPollSchedule(this.poll);
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
        // Polls broken off to the end: Ollama crashed or is restarting, not a model that will not leave.
        if (lastError !== undefined && isConnectionLost(lastError)) {
          const lost = new OllamaConnectionLostError(this.llm.baseUrl, "unloading the LLM", { cause: lastError });
          return await this.drawAnywayIfVramFree(lost, lastError, started, signal);
        }
        const models = lastError === undefined ? stillListed.map((m) => m.name) : [...targets];
        throw new UnloadTimeoutError(models, this.llm.unloadTimeoutMs, lastError === undefined ? {} : { cause: lastError });
      }
      await sleep(Math.min(schedule.nextPauseMs(), remaining()), signal);
    }

    const freeVramMiB = await this.settledFreeVramMiB(signal);
    const durationMs = Date.now() - started;
    this.logger.info(`unloaded ${[...targets].join(", ")} in ${durationMs} ms`);
    return { reachable: true, unloaded: [...targets], durationMs, freeVramMiB };
  }

  /**
   * One unload call (`keep_alive: 0`, no messages). Never rejects: `acceptedAt` (when it was
   * sent) once Ollama took it, or the error. 404 counts as taken: the model was deleted, and
   * the /api/ps poll has the last word anyway.
   */
  private async sendUnload(model: string, signal: AbortSignal | undefined, timeoutMs: number): Promise<{ acceptedAt?: number; error?: unknown }> {
    const sentAt = Date.now();
    try {
      await this.client(signal, timeoutMs).chat({ model, messages: [], keep_alive: 0 });
      return { acceptedAt: sentAt };
    } catch (error) {
      return httpStatusOf(error) === 404 ? { acceptedAt: sentAt } : { error };
    }
  }

  /**
   * Ollama broke off the connection during the unload: it may still hold the LLM, so `lost`
   * is thrown, unless nvidia-smi answers and lists no process holding GPU memory (then
   * nothing of Ollama's is in VRAM, as when it is down, and the picture is drawn with a
   * warning). No nvidia-smi, a failure, or any process listed: `lost`.
   */
  private async drawAnywayIfVramFree(
    lost: OllamaConnectionLostError,
    cause: unknown,
    started: number,
    signal: AbortSignal | undefined,
  ): Promise<UnloadReport> {
    const bin = findNvidiaSmi(this.llm.nvidiaSmi, this.env);
    const apps = bin === undefined ? undefined : await readComputeApps(bin, { signal, timeoutMs: Math.min(this.requestTimeoutMs, 5_000) });
    if (apps === undefined || apps.length > 0) throw lost;
    const warning =
      `Ollama at ${this.llm.baseUrl} broke off the connection while unloading the LLM (${describeCause(cause)}), ` +
      `but nvidia-smi shows no process holding GPU memory, so the picture is drawn anyway. ` +
      `Check that Ollama is running and answering (ollama ps, or GET ${this.llm.baseUrl}/api/ps; its log says why it broke off).`;
    this.logger.warn(warning);
    return { reachable: false, unloaded: [], durationMs: Date.now() - started, freeVramMiB: await this.probe.freeVramMiB(signal), warning };
  }

  private noteHeldBefore(listed: ResidentModel[], at: number): void {
    if (listed.length === 0 && this.restorePending) return;
    this.heldBefore = restoreOrder(listed, this.llm.model, at);
    this.restorePending = true;
  }

  /** What reload() loads, in order; empty for LLM_RESTORE=none. */
  private restoreTargets(): RestoreTarget[] {
    const configured: RestoreTarget = { name: this.llm.model, configured: true, numCtx: undefined, keepAlive: undefined };
    switch (this.llm.restore ?? "previous") {
      case "none":
        return [];
      case "default":
        return [configured];
      case "previous":
        return this.heldBefore.length > 0 ? this.heldBefore : [configured];
    }
  }

  private async reloadNow(signal: AbortSignal | undefined): Promise<ReloadReport> {
    signal?.throwIfAborted();
    const started = Date.now();
    const targets = this.restoreTargets();
    const loaded: RestoreTarget[] = [];
    const failed: NonNullable<ReloadReport["failed"]> = [];
    const warnings: string[] = [];
    const warn = (warning: string) => {
      this.logger.warn(warning);
      warnings.push(warning);
    };
    const report = (r: Pick<ReloadReport, "reachable" | "fullyOnGpu">, models: string[]): ReloadReport => ({
      model: mainModel(targets, loaded, this.llm.model),
      models,
      failed,
      durationMs: Date.now() - started,
      ...(warnings.length > 0 ? { warning: warnings.join("; ") } : {}),
      ...r,
    });

    if (targets.length === 0) {
      // LLM_RESTORE=none. The scheduler counts the LLM side as ready all the same: the next
      // LLM lease is granted at once and Ollama loads its model on that call, so nothing
      // here or there tries to "reload" an LLM that was never meant to come back.
      this.logger.info("LLM_RESTORE is none: nothing loaded back, VRAM left free");
      this.restorePending = false;
      return report({ reachable: true }, []);
    }

    let firstFailure: unknown;
    for (const target of targets) {
      if (target.configured && isZeroKeepAlive(this.llm.keepAlive)) {
        // keep_alive 0 with no messages IS the unload request: loading would unload.
        warn(`LLM_KEEP_ALIVE is 0, so the LLM is not kept loaded; skipped reloading ${target.name}`);
        continue;
      }
      try {
        await this.load(target, signal);
        loaded.push(target);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (isUnreachable(err)) {
          const missing = targets.filter((t) => !loaded.includes(t)).map((t) => t.name);
          warn(`Ollama is not reachable at ${this.llm.baseUrl} (${describeCause(err)}); ${missing.join(", ")} not reloaded`);
          return report({ reachable: false }, loaded.map((t) => t.name));
        }
        firstFailure ??= ollamaRequestFailure(err, signal, this.llm.baseUrl, target.name);
        failed.push({ model: target.name, error: describeCause(err) });
        // Deleted since the burst began: not worth a try after the next burst either.
        if (httpStatusOf(err) === 404) this.heldBefore = this.heldBefore.filter((t) => t !== target);
        warn(`${target.name} could not be loaded back (${describeCause(err)})`);
      }
    }
    if (loaded.length === 0 && firstFailure !== undefined) throw firstFailure;
    this.restorePending = false;
    this.configuredLoaded = loaded.some((t) => t.configured);
    if (loaded.length === 0) return report({ reachable: true }, []);

    let listed: ResidentModel[];
    try {
      listed = await readResident(this.client(signal, this.requestTimeoutMs));
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const names = loaded.map((t) => t.name).join(", ");
      warn(`${names} loaded, but /api/ps could not be read to check ${loaded.length === 1 ? "it is" : "they are"} on the GPU (${describeCause(err)})`);
      return report({ reachable: true }, loaded.map((t) => t.name));
    }
    const back: string[] = [];
    let allOnGpu = true;
    for (const target of loaded) {
      const resident = listed.find((m) => sameModel(m.name, target.name));
      if (resident === undefined) {
        // With several, Ollama may have let an earlier one go to make room for a later one.
        warn(`${target.name} loaded, but /api/ps does not list it`);
        continue;
      }
      back.push(target.name);
      if (resident.fullyOnGpu) continue;
      allOnGpu = false;
      const pct = resident.sizeBytes > 0 ? Math.round((100 * resident.sizeVramBytes) / resident.sizeBytes) : 0;
      const remedy = target.configured ? "lower LLM_NUM_CTX or use a smaller model" : "its client may ask for a smaller context or model";
      warn(
        `${target.name} is only ${pct}% on the GPU (${mib(resident.sizeVramBytes)} of ${mib(resident.sizeBytes)} MiB): ` +
          `the rest runs on the CPU and chats will be slow; ${remedy}`,
      );
    }
    return report({ reachable: true, ...(back.length > 0 ? { fullyOnGpu: allOnGpu } : {}) }, back);
  }

  /** One load request: a chat with no messages (REFERENCE.md §2), with the target's options and keep_alive. */
  private async load(target: RestoreTarget, signal: AbortSignal | undefined): Promise<void> {
    const options: Partial<Options> = target.configured
      ? llmModelOptions(this.llm)
      : target.numCtx === undefined
        ? {}
        : { num_ctx: target.numCtx };
    const keepAlive = target.configured ? this.llm.keepAlive : target.keepAlive;
    await this.client(signal, this.loadTimeoutMs).chat({
      model: target.name,
      messages: [],
      ...(keepAlive === undefined ? {} : { keep_alive: keepAlive }),
      ...(Object.keys(options).length > 0 ? { options } : {}),
    });
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

/**
 * The models /api/ps listed when an unload began (`at`), as reload() is to load them back.
 *
 * The order: soonest expires_at first, latest last. /api/ps has no "last used" time; its
 * expires_at is the end of the model's last request plus that request's keep_alive, so
 * among models with the same keep_alive it is the order they were last used in, and
 * whatever their keep_alives it is the order Ollama would have let them go in. Loading
 * the one that would stay longest (the one used last, or kept forever like LLM_MODEL
 * with LLM_KEEP_ALIVE=-1) last means that when VRAM cannot hold them all, Ollama makes
 * room by evicting one loaded earlier, never that one.
 *
 * Each keeps the time it had left (as keep_alive), so a burst neither shortens nor
 * lengthens its stay in VRAM; a model already expired (being unloaded) was on its way
 * out and is left out.
 */
export function restoreOrder(listed: readonly ResidentModel[], configuredModel: string, at: number): RestoreTarget[] {
  return listed
    .map((m) => ({ m, left: m.expiresAt === undefined ? NaN : Date.parse(m.expiresAt) - at }))
    .filter(({ left }) => !(left <= 0))
    // Stable: equal expiries (two models kept forever) keep /api/ps's order; unknown ones go first.
    .sort((a, b) => sortKey(a.left) - sortKey(b.left))
    .map(({ m, left }) => ({
      name: m.name,
      configured: sameModel(m.name, configuredModel),
      numCtx: m.contextLength,
      keepAlive: Number.isNaN(left) ? undefined : left > FOREVER_AFTER_MS ? -1 : Math.ceil(left / 1000),
    }));
}

/**
 * The listing as it was before our early unload of the configured LLM: that call may have
 * reached Ollama first, which then lists the model expiring now (or, once dropped, not at
 * all). It was resident and is to come back: last, so it is the one that stays should
 * VRAM be short (reload() gives it its configured keep_alive, whatever is written here).
 */
function withConfiguredLlm(listed: readonly ResidentModel[], configuredModel: string): ResidentModel[] {
  const own = listed.find((m) => sameModel(m.name, configuredModel));
  const others = listed.filter((m) => m !== own);
  const lastToExpire = new Date(Date.now() + 2 * FOREVER_AFTER_MS).toISOString();
  const base: ResidentModel = own ?? { name: configuredModel, sizeBytes: 0, sizeVramBytes: 0, fullyOnGpu: true, expiresAt: undefined, contextLength: undefined };
  return [...others, { ...base, expiresAt: lastToExpire }];
}

function sortKey(left: number): number {
  return Number.isNaN(left) ? Number.MIN_SAFE_INTEGER : left;
}

/** ReloadReport.model: the configured LLM when it was meant to come back, else the last one loaded. */
function mainModel(targets: readonly RestoreTarget[], loaded: readonly RestoreTarget[], configuredModel: string): string {
  if (targets.length === 0 || targets.some((t) => t.configured)) return configuredModel;
  return (loaded.at(-1) ?? targets.at(-1))?.name ?? configuredModel;
}

function isZeroKeepAlive(keepAlive: number | string): boolean {
  if (typeof keepAlive === "number") return keepAlive === 0;
  return /^0+(\.0+)?(ms|s|m|h)?$/.test(keepAlive.trim());
}

function mib(bytes: number): number {
  return Math.round(bytes / (1024 * 1024));
}
