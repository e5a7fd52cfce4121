import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";
import type { Config } from "../../config/index.js";
import type { ModelFile } from "../../models/index.js";
import {
  SdAbortedError,
  SdError,
  SdOutOfMemoryError,
  SdOutputMissingError,
  SdProcessError,
  SdServerRequestError,
  SdTimeoutError,
  type SdDiagnostics,
} from "../errors.js";
import type { GenerationResult } from "../generate-images.js";
import { checkGenerationInputs } from "../generation-inputs.js";
import { guardedListener } from "../guarded-listener.js";
import type { GenerationParams } from "../generation-request.js";
import { batchOutputPaths, newOutputPath } from "../output-paths.js";
import { completePngInfo } from "../png-check.js";
import type { SdEvent } from "../sd-events.js";
import { SdOutputParser } from "../sd-output-parser.js";
import type { SdImage } from "../sd-runner.js";
import { buildSdapiRequest } from "./sdapi-request.js";
import { sdServerCall, SdServerConnectionError } from "./sd-server-http.js";
import { SdServerProcess, type SdServerLaunch, type SdServerState } from "./sd-server-process.js";

/**
 * The sd-server backend: one sd-server kept alive for the burst, so a model is read from
 * disk once and not once per image. The GPU scheduler decides how long a burst is; it
 * calls release() when the burst ends, before the LLM is asked back, and the process is
 * gone (its pid's exit seen) when that resolves.
 *
 * sd-server serves one generation at a time and prints the same progress as sd-cli with
 * no request id; DiffuGen sends it one job at a time (the scheduler's diffusion lease is
 * exclusive), so everything it prints during a request belongs to that request's job.
 * It cannot cancel a generation and does not notice a client that left: cancelling a job
 * means ending the process, and the next job of the burst starts a new one.
 */

export interface ServerGenerateOptions {
  sd: Config["sd"];
  /** The sd-server binary (SD_SERVER_BIN, resolved). */
  bin: string;
  signal?: AbortSignal | undefined;
  onEvent?: ((event: SdEvent) => void) | undefined;
  outputDir?: string | undefined;
  outputTag?: string | undefined;
  env?: Record<string, string | undefined> | undefined;
  timeoutMs?: number | undefined;
  killGraceMs?: number | undefined;
  /** The registry name (for /health). */
  model: string;
  /** Which port to try for a new sd-server (default: a free one). */
  pickPort?: (() => Promise<number>) | undefined;
}

/** Why an sd-server was stopped (counted in /metrics). */
export type SdServerStopReason = "burst_end" | "model_change" | "cli_job" | "cancel" | "failure" | "shutdown";

export interface SdServerStatus {
  state: SdServerState;
  model: string;
  pid: number | undefined;
  port: number;
  /** Jobs it has run since it started. */
  jobs: number;
}

/** What the backend tells its owner (SdBackends counts and logs it). */
export interface SdServerObserver {
  started?(status: SdServerStatus, ms: number): void;
  stopped?(status: SdServerStatus, reason: SdServerStopReason): void;
}

/** Waiting this long for the last lines of a generation after its answer came is enough: they were written first. */
const outputSettleMs = 50;

export class SdServerBackend {
  #server: SdServerProcess | undefined;
  #launchKey: string | undefined;
  #jobs = 0;
  #model = "";
  readonly #observer: SdServerObserver;

  constructor(observer: SdServerObserver = {}) {
    this.#observer = observer;
  }

  /** The process kept for the burst, if any. */
  status(): SdServerStatus | undefined {
    const server = this.#server;
    if (!server || server.state === "stopped") return undefined;
    return { state: server.state, model: this.#model, pid: server.pid, port: server.port, jobs: this.#jobs };
  }

  /** Stops the kept process and resolves once its exit is seen. Idempotent. */
  async release(reason: SdServerStopReason): Promise<void> {
    const server = this.#server;
    if (!server) return;
    const status = this.status();
    this.#server = undefined;
    this.#launchKey = undefined;
    await server.stop();
    if (status) this.#observer.stopped?.(status, reason);
  }

  /** Draws one job on the kept sd-server (starting it, or a new one for another model). */
  async generate(params: GenerationParams, files: readonly ModelFile[], options: ServerGenerateOptions): Promise<GenerationResult> {
    const startedAt = performance.now();
    const { sd } = options;
    if (options.signal?.aborted) throw new SdAbortedError(options.signal.reason, { program: "sd-server" });
    const loraFiles = checkGenerationInputs(params, sd.loraDir);
    const request = await buildSdapiRequest(params, loraFiles);

    const outputDir = path.resolve(options.outputDir ?? sd.outputDir);
    await mkdir(outputDir, { recursive: true });
    const outputPaths = batchOutputPaths(newOutputPath(outputDir, new Date(), options.outputTag), params.batchCount);

    const deadline = AbortSignal.timeout(options.timeoutMs ?? sd.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
    const parser = new SdOutputParser();
    let firstEventAt: number | undefined;
    const listener = guardedListener(options.onEvent);
    const deliver = listener.deliver;

    const server = await this.#serverFor(launchFor(files, options, outputDir, signal), options.model, deliver);
    this.#jobs += 1;
    let settle: () => void = () => {};
    const settled = new Promise<void>((resolve) => (settle = resolve));
    server.attach((stream, chunk) => {
      const events = parser.push(stream, chunk);
      if (events.length > 0) firstEventAt ??= performance.now();
      for (const event of events) deliver(event);
      if (parser.summary.generateSeconds !== undefined) settle();
    });
    const sentAt = performance.now();
    const diagnostics = (): SdDiagnostics => ({
      errorLines: parser.summary.errorLines,
      stderrTail: parser.summary.stderrTail,
      pid: server.pid,
      program: "sd-server",
    });

    try {
      // sd-server knows a LoRA only from its list, which this call refreshes.
      if (loraFiles.size > 0) await sdServerCall(server.port, "GET", "/sdapi/v1/loras", { signal });
      const answer = await sdServerCall(server.port, "POST", request.path, { body: request.body, signal });
      const answeredAt = performance.now();
      // Its last lines (decode, `generate_image completed`) were written before the answer, but may still be in the pipe.
      await Promise.race([settled, new Promise((resolve) => setTimeout(resolve, outputSettleMs))]);
      if (listener.error !== undefined) throw listener.error;
      if (answer.status !== 200) {
        const oom = parser.summary.outOfMemoryLine;
        throw oom ? new SdOutOfMemoryError(undefined, undefined, oom, diagnostics()) : new SdServerRequestError(answer.status, answer.text, diagnostics());
      }
      const images = await saveImages(answer.text, outputPaths, params, diagnostics);
      const resultAt = performance.now();
      return {
        backend: "server",
        images,
        seeds: images.map((image) => image.seed),
        argv: [options.bin, ...server.launch.args],
        timings: {
          spawnToFirstEventMs: firstEventAt === undefined ? undefined : firstEventAt - sentAt,
          exitToResultMs: resultAt - answeredAt,
          totalMs: resultAt - startedAt,
          samplingSeconds: parser.summary.samplingSeconds.reduce((sum, s) => sum + (s ?? 0), 0),
          generateSeconds: parser.summary.generateSeconds,
        },
      };
    } catch (err) {
      await Promise.all(outputPaths.map((file) => rm(file, { force: true })));
      throw await this.#failure(err, server, { signal: options.signal, deadline, timeoutMs: options.timeoutMs ?? sd.timeoutMs,
        diagnostics,
        oom: () => parser.summary.outOfMemoryLine,
      });
    } finally {
      server.detach();
    }
  }

  /**
   * The error a client should see, once the process it came from is dealt with: a
   * cancelled or timed-out generation cannot be stopped inside sd-server, and a crash or
   * an out-of-memory leaves it unusable, so the process is ended (its exit confirmed) and
   * the next job starts a fresh one.
   */
  async #failure(
    err: unknown,
    server: SdServerProcess,
    context: {
      signal: AbortSignal | undefined;
      deadline: AbortSignal;
      timeoutMs: number;
      diagnostics: () => SdDiagnostics;
      /** The line that said it ran out of memory, if one did. */
      oom: () => string | undefined;
    },
  ): Promise<unknown> {
    if (context.signal?.aborted) {
      await this.release("cancel");
      return new SdAbortedError(context.signal.reason, context.diagnostics());
    }
    if (context.deadline.aborted) {
      await this.release("failure");
      return new SdTimeoutError(context.timeoutMs, context.diagnostics());
    }
    if (err instanceof SdServerConnectionError) {
      // It died mid-request (no signal handler: a crash shows as a reset connection). Its
      // exit code and its last output say why.
      const exit = await Promise.race([server.exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 2000))]);
      await this.release("failure");
      const summary = context.diagnostics();
      const oom = context.oom();
      if (oom) return new SdOutOfMemoryError(exit?.code, exit?.signal, oom, summary);
      return new SdProcessError(exit?.code ?? server.exit?.code, exit?.signal ?? server.exit?.signal, summary);
    }
    if (err instanceof SdError) {
      await this.release("failure");
      return err;
    }
    return err;
  }

  async #serverFor(launch: SdServerLaunch, model: string, deliver: (event: SdEvent) => void): Promise<SdServerProcess> {
    const key = launchKey(launch);
    const current = this.#server;
    if (current && current.state === "ready" && this.#launchKey === key) {
      deliver({ type: "server_reused", pid: current.pid ?? 0, port: current.port, phase: "loading_model", progress: 0 });
      return current;
    }
    if (current) await this.release(current.state === "ready" ? "model_change" : "failure");
    const startedAt = performance.now();
    const server = await SdServerProcess.start(launch, (state) => {
      // A kept server that dies between jobs is forgotten; the next job starts another.
      if (state === "stopped" && this.#server === server) {
        const status = { state, model: this.#model, pid: server.pid, port: server.port, jobs: this.#jobs };
        this.#server = undefined;
        this.#launchKey = undefined;
        this.#observer.stopped?.(status, "failure");
      }
    });
    this.#server = server;
    this.#launchKey = key;
    this.#model = model;
    this.#jobs = 0;
    deliver({ type: "spawned", pid: server.pid ?? 0, argv: [launch.bin, ...launch.args], phase: "loading_model", progress: 0 });
    this.#observer.started?.(this.status() ?? { state: "ready", model, pid: server.pid, port: server.port, jobs: 0 }, performance.now() - startedAt);
    return server;
  }
}

/** The process for these weights and settings: what makes two jobs able to share one. */
function launchFor(files: readonly ModelFile[], options: ServerGenerateOptions, cwd: string, signal: AbortSignal): SdServerLaunch {
  const { sd } = options;
  const args: string[] = [];
  for (const file of files) args.push(file.flag, file.path);
  if (sd.threads !== undefined) args.push("-t", String(sd.threads));
  // Always given, so a job with a LoRA and one without can share the process.
  if (sd.loraDir) args.push("--lora-model-dir", sd.loraDir);
  for (const arg of sd.extraArgs) if (arg !== "--color") args.push(arg);
  // The file sd-server names in /sdapi/v1/options: the model, else the diffusion model.
  const main = files.find((file) => file.flag === "-m") ?? files.find((file) => file.flag === "--diffusion-model") ?? files[0];
  return {
    bin: options.bin,
    args,
    model: options.model,
    modelFile: main?.path ?? "",
    cwd,
    env: options.env,
    killGraceMs: options.killGraceMs,
    pickPort: options.pickPort,
    signal,
  };
}

function launchKey(launch: SdServerLaunch): string {
  return JSON.stringify([launch.bin, launch.args, launch.cwd, launch.env ?? {}]);
}

/** sd-server's answer → the PNG files DiffuGen names, checked whole, with the seed of each. */
async function saveImages(
  text: string,
  outputPaths: readonly string[],
  params: GenerationParams,
  diagnostics: () => SdDiagnostics,
): Promise<SdImage[]> {
  let body: { images?: unknown; info?: unknown };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new SdServerRequestError(200, text, diagnostics());
  }
  const encoded = Array.isArray(body.images) ? body.images.filter((image): image is string => typeof image === "string") : [];
  const seeds = seedsOf(body.info);
  const images: SdImage[] = [];
  const missing: string[] = [];
  for (const [index, file] of outputPaths.entries()) {
    const png = encoded[index] === undefined ? undefined : Buffer.from(encoded[index], "base64");
    const info = png ? completePngInfo(png) : undefined;
    if (!png || !info) {
      missing.push(file);
      continue;
    }
    await writeFile(file, png);
    images.push({ path: file, seed: seeds[index] ?? params.seed + index, index, width: info.width, height: info.height });
  }
  if (missing.length > 0) throw new SdOutputMissingError(missing, diagnostics());
  return images;
}

/** `info` is JSON inside a string; its `all_seeds` are the real seeds (the first + i). */
function seedsOf(info: unknown): number[] {
  if (typeof info !== "string") return [];
  try {
    const parsed = JSON.parse(info) as { all_seeds?: unknown };
    return Array.isArray(parsed.all_seeds) ? parsed.all_seeds.filter((seed): seed is number => typeof seed === "number") : [];
  } catch {
    return [];
  }
}
