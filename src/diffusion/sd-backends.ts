import { performance } from "node:perf_hooks";
import type { Config } from "../config/index.js";
import { locateExecutable } from "../config/index.js";
import type { ModelFile } from "../models/index.js";
import { generateImages, type GenerateImagesOptions, type GenerationResult, type SdBackendKind } from "./generate-images.js";
import type { GenerationParams } from "./generation-request.js";
import type { SdEvent } from "./sd-events.js";
import { vramNeedKey, type VramNeeds } from "./vram-needs.js";
import { SdServerBackend, type SdServerStatus, type SdServerStopReason } from "./sd-server/sd-server-backend.js";
import { sdServerCannotRun } from "./sd-server/sdapi-request.js";

/**
 * The two ways DiffuGen runs sd.cpp, and which one draws a job (SD_BACKEND):
 *
 * - `cli`: a fresh sd-cli per job. It reads the weights every time, and writes a preview
 *   every step (nearly free with `proj`).
 * - `server`: sd.cpp's sd-server, kept alive for the burst (the scheduler's diffusion
 *   batch): the weights are read by the first job and stay loaded for the next ones. It
 *   writes no preview, so a job that asks for previews (OpenAI's `partial_images`) still
 *   runs on sd-cli, as does one sd-server would silently change (over 100 steps).
 * - `auto` (the default): `server` when sd-server is found, else `cli`.
 */

export type SdBackendChoice =
  | { backend: "cli"; serverBin?: undefined; reason: string }
  | { backend: "server"; serverBin: string; reason: string };

/** Why no backend can draw a job (an admission refusal: nothing was spawned or unloaded). */
export interface SdBackendUnavailable {
  code: "sd_not_found" | "sd_server_not_found";
  message: string;
}

export interface SdBackendGenerateOptions extends GenerateImagesOptions {
  /** The registry name of the model (what /health shows for a running sd-server). */
  model: string;
  /** The client shows previews: only sd-cli writes them. */
  previews?: boolean | undefined;
}

export interface SdBackendStats {
  /** Model loads: every sd-cli run, every sd-server start. */
  loads: Record<SdBackendKind, number>;
  jobs: Record<SdBackendKind, number>;
  serverStarts: number;
  serverStops: Record<SdServerStopReason, number>;
  /** From the start of a job's generation to its first sampling step, by backend. */
  firstStep: Record<SdBackendKind, { count: number; meanMs: number; lastMs: number | undefined; maxMs: number }>;
}

export interface SdBackendsHealth {
  setting: Config["sd"]["backend"];
  lastBackend: SdBackendKind | undefined;
  /** The sd-server kept for the burst, if one is up. */
  server: SdServerStatus | undefined;
}

export interface SdBackendsOptions {
  log?: ((message: string, fields: Record<string, unknown>) => void) | undefined;
  /** Which port a new sd-server tries (default: one that is free now); tests hand it a taken one. */
  pickPort?: (() => Promise<number>) | undefined;
  /** Where a drawing's measured peak VRAM is learned, per shape. */
  needs?: VramNeeds | undefined;
  /** What a process holds on the GPU now, in MiB (nvidia-smi); absent: nothing is measured. */
  processVramMiB?: ((pid: number) => Promise<number | undefined>) | undefined;
}

/** How often the sd process's VRAM is read while it draws (one nvidia-smi call each). */
const vramSampleMs = 250;

export class SdBackends {
  readonly #sd: Config["sd"];
  readonly #server: SdServerBackend;
  readonly #log: (message: string, fields: Record<string, unknown>) => void;
  readonly #pickPort: SdBackendsOptions["pickPort"];
  readonly #needs: VramNeeds | undefined;
  readonly #processVramMiB: SdBackendsOptions["processVramMiB"];
  #lastBackend: SdBackendKind | undefined;
  readonly #stats: SdBackendStats = {
    loads: { cli: 0, server: 0 },
    jobs: { cli: 0, server: 0 },
    serverStarts: 0,
    serverStops: { burst_end: 0, model_change: 0, cli_job: 0, cancel: 0, failure: 0, shutdown: 0 },
    firstStep: {
      cli: { count: 0, meanMs: 0, lastMs: undefined, maxMs: 0 },
      server: { count: 0, meanMs: 0, lastMs: undefined, maxMs: 0 },
    },
  };

  constructor(sd: Config["sd"], options: SdBackendsOptions = {}) {
    this.#sd = sd;
    this.#log = options.log ?? (() => {});
    this.#pickPort = options.pickPort;
    this.#needs = options.needs;
    this.#processVramMiB = options.processVramMiB;
    this.#server = new SdServerBackend({
      started: (status, ms) => {
        this.#stats.serverStarts += 1;
        this.#log("sd-server started", { model: status.model, pid: status.pid, port: status.port, ms: Math.round(ms) });
      },
      stopped: (status, reason) => {
        this.#stats.serverStops[reason] += 1;
        this.#log("sd-server stopped", { model: status.model, pid: status.pid, reason, jobs: status.jobs });
      },
    });
  }

  /** Which program will draw this job, and why. */
  choose(params: GenerationParams, previews = false): SdBackendChoice {
    const setting = this.#sd.backend;
    if (setting === "cli") return { backend: "cli", reason: "SD_BACKEND=cli" };
    const serverBin = locateExecutable(this.#sd.serverBin);
    if (serverBin === undefined) return { backend: "cli", reason: `sd-server not found (${this.#sd.serverBin})` };
    if (previews) return { backend: "cli", reason: "the client asked for previews, which only sd-cli writes" };
    const cannot = sdServerCannotRun(params);
    if (cannot) return { backend: "cli", reason: cannot };
    return { backend: "server", serverBin, reason: setting === "server" ? "SD_BACKEND=server" : "sd-server found" };
  }

  /** Why this job cannot be drawn at all, or undefined. Asked at admission. */
  unavailable(params: GenerationParams, previews = false): SdBackendUnavailable | undefined {
    if (this.#sd.backend === "server" && locateExecutable(this.#sd.serverBin) === undefined) {
      return {
        code: "sd_server_not_found",
        message: `sd-server not found: SD_BACKEND=server but SD_SERVER_BIN=${this.#sd.serverBin} is not an executable file (nor on PATH)`,
      };
    }
    const choice = this.choose(params, previews);
    if (choice.backend === "cli" && locateExecutable(this.#sd.bin) === undefined) {
      return {
        code: "sd_not_found",
        message: `sd-cli not found: SD_CPP_BIN=${this.#sd.bin} is not an executable file (nor on PATH)`,
      };
    }
    return undefined;
  }

  async generate(params: GenerationParams, files: readonly ModelFile[], options: SdBackendGenerateOptions): Promise<GenerationResult> {
    const choice = this.choose(params, options.previews);
    const startedAt = performance.now();
    let stepSeen = false;
    const peak = this.#processVramMiB ? new PeakSampler(this.#processVramMiB) : undefined;
    const onEvent = (event: SdEvent): void => {
      if (event.type === "spawned") this.#stats.loads[choice.backend] += 1;
      if (event.type === "spawned" || event.type === "server_reused") peak?.watch(event.pid);
      if (event.type === "step" && !stepSeen) {
        stepSeen = true;
        this.#recordFirstStep(choice.backend, performance.now() - startedAt);
      }
      options.onEvent?.(event);
    };
    this.#lastBackend = choice.backend;
    this.#stats.jobs[choice.backend] += 1;
    try {
      const result = await this.#run(choice, params, files, { ...options, onEvent });
      const peakMiB = await peak?.stop();
      if (peakMiB !== undefined) this.#needs?.learn(vramNeedKey(options.model, params, choice.backend), peakMiB);
      return result;
    } finally {
      await peak?.stop();
    }
  }

  #run(choice: SdBackendChoice, params: GenerationParams, files: readonly ModelFile[], options: SdBackendGenerateOptions): Promise<GenerationResult> {
    if (choice.backend === "cli") {
      // A job drawn on sd-cli during a burst (it wants previews): the kept sd-server holds
      // VRAM, so it goes first. The next server job of the burst starts a new one.
      return this.#server.release("cli_job").then(() => generateImages(params, files, options));
    }
    return this.#server.generate(params, files, {
      sd: this.#sd,
      bin: choice.serverBin,
      signal: options.signal,
      onEvent: options.onEvent,
      outputDir: options.outputDir,
      outputTag: options.outputTag,
      env: options.env,
      timeoutMs: options.timeoutMs,
      killGraceMs: options.killGraceMs,
      model: options.model,
      pickPort: this.#pickPort,
    });
  }

  /**
   * Ends the burst's sd-server (the GPU scheduler calls this before it asks the LLM back;
   * shutdown too). Resolves once its exit is confirmed: its VRAM is free.
   */
  release(reason: SdServerStopReason = "burst_end"): Promise<void> {
    return this.#server.release(reason);
  }

  health(): SdBackendsHealth {
    return { setting: this.#sd.backend, lastBackend: this.#lastBackend, server: this.#server.status() };
  }

  stats(): SdBackendStats {
    const s = this.#stats;
    return {
      loads: { ...s.loads },
      jobs: { ...s.jobs },
      serverStarts: s.serverStarts,
      serverStops: { ...s.serverStops },
      firstStep: { cli: { ...s.firstStep.cli }, server: { ...s.firstStep.server } },
    };
  }

  #recordFirstStep(backend: SdBackendKind, ms: number): void {
    const stat = this.#stats.firstStep[backend];
    stat.meanMs = (stat.meanMs * stat.count + ms) / (stat.count + 1);
    stat.count += 1;
    stat.lastMs = ms;
    stat.maxMs = Math.max(stat.maxMs, ms);
  }
}

/**
 * The highest VRAM one process held while it drew, read every vramSampleMs. Readings
 * that fail are skipped; no reading at all leaves the shape unlearned.
 */
class PeakSampler {
  #peak: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #pending: Promise<void> = Promise.resolve();

  constructor(private readonly read: (pid: number) => Promise<number | undefined>) {}

  watch(pid: number): void {
    if (this.#timer) clearInterval(this.#timer);
    const sample = () => {
      this.#pending = this.read(pid).then(
        (mib) => {
          if (mib !== undefined) this.#peak = Math.max(this.#peak ?? 0, mib);
        },
        () => undefined,
      );
    };
    sample();
    this.#timer = setInterval(sample, vramSampleMs);
    this.#timer.unref();
  }

  async stop(): Promise<number | undefined> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#pending;
    return this.#peak;
  }
}
