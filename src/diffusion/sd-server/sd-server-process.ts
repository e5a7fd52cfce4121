import net from "node:net";
import { StringDecoder } from "node:string_decoder";
import { execa, type ResultPromise } from "execa";
import { SdOutputParser } from "../sd-output-parser.js";
import { killWhenThisProcessExits, sdSpawnOptions } from "../sd-spawn.js";
import type { SdStream } from "../sd-events.js";
import { SdAbortedError, SdProcessError, SdSpawnError, SdTimeoutError, type SdDiagnostics } from "../errors.js";
import { sdServerCall, SdServerConnectionError } from "./sd-server-http.js";

/**
 * One sd-server process, in four explicit states (llama-swap's process.go does the same
 * for llama-server), each entered by one function:
 *
 *   stopped ──start()──▶ starting ──(served)──▶ ready ──stop()──▶ stopping ──(exit)──▶ stopped
 *                          │                      │
 *                          └──(exit, stop())──────┴──(exit on its own)──▶ stopped
 *
 * A process is never reused after `stopped`: the backend starts a new one. `stopped` is
 * entered only once the operating system has reported the pid's exit, so whoever waits
 * for stop() knows the GPU memory it held is free.
 */

export type SdServerState = "stopped" | "starting" | "ready" | "stopping";

export interface SdServerLaunch {
  bin: string;
  /** Model and context flags (the listen address is added here). */
  args: readonly string[];
  /** The registry name of the model it serves (for /health and logs). */
  model: string;
  /** The model file the server reports in /sdapi/v1/options (its stem), to know it answers. */
  modelFile: string;
  cwd: string;
  env?: Record<string, string | undefined> | undefined;
  /** How long from spawn until it must be answering (default 60 s: a slow disk, a big model). */
  readyTimeoutMs?: number | undefined;
  /** TERM, then KILL after this (default 3 s). */
  killGraceMs?: number | undefined;
  /** Picks the port to try (default: one the kernel says is free now). Tests make it pick a taken one. */
  pickPort?: (() => Promise<number>) | undefined;
  signal?: AbortSignal | undefined;
}

export interface SdServerExit {
  code: number | undefined;
  signal: string | undefined;
}

/** Where the process's output goes while a job runs on it (the job's own parser). */
export type OutputSink = (stream: SdStream, chunk: Buffer) => void;

const defaultReadyTimeoutMs = 60_000;
const defaultKillGraceMs = 3000;
/** A refused connect right after `listening on:` is normal (it prints before it binds). */
const connectRetryMs = 5;
const maxPortAttempts = 3;

/**
 * The port was taken: sd-server printed `listening on:` and exited 0 (fixtures:
 * serve-port-in-use), or something else answers there. Retried on another port; thrown
 * when every attempt met a taken port.
 */
class PortTakenError extends SdProcessError {
  constructor(message: string, diagnostics: SdDiagnostics) {
    super(undefined, undefined, diagnostics, `sd-server could not serve: ${message}`);
    this.name = "PortTakenError";
  }
}

export class SdServerProcess {
  #state: SdServerState = "stopped";
  readonly launch: SdServerLaunch;
  #child: ResultPromise | undefined;
  #pid: number | undefined;
  #port = 0;
  #exit: SdServerExit | undefined;
  #exited: Promise<SdServerExit> = Promise.resolve({ code: undefined, signal: undefined });
  #sink: OutputSink | undefined;
  /** Output that belongs to no job (start-up, between jobs): kept for diagnostics. */
  #ownOutput = new SdOutputParser();
  #stateListeners = new Set<(state: SdServerState) => void>();

  private constructor(launch: SdServerLaunch) {
    this.launch = launch;
  }

  /**
   * Starts sd-server and resolves once it is really serving on a port of ours: it printed
   * `listening on:`, answers /sdapi/v1/options with our model, and is still alive. A taken
   * port is retried on another. Rejects (with the process gone) when it exits first
   * (a bad model file: SdProcessError with its ERROR lines), on timeout or abort.
   */
  static async start(launch: SdServerLaunch, onState?: (state: SdServerState) => void): Promise<SdServerProcess> {
    for (let attempt = 1; ; attempt++) {
      const process = new SdServerProcess(launch);
      if (onState) process.onState(onState);
      try {
        await process.#start(await (launch.pickPort ?? freePort)());
        return process;
      } catch (err) {
        if (!(err instanceof PortTakenError) || attempt >= maxPortAttempts) throw err;
      }
    }
  }

  get state(): SdServerState {
    return this.#state;
  }
  get pid(): number | undefined {
    return this.#pid;
  }
  get port(): number {
    return this.#port;
  }
  /** How it ended, once stopped. */
  get exit(): SdServerExit | undefined {
    return this.#exit;
  }
  /** Resolves when the process has exited (at once if it never ran). */
  get exited(): Promise<SdServerExit> {
    return this.#exited;
  }

  onState(listener: (state: SdServerState) => void): void {
    this.#stateListeners.add(listener);
  }

  /** Routes the process's output to one job until detach(). */
  attach(sink: OutputSink): void {
    this.#sink = sink;
  }
  detach(): void {
    this.#sink = undefined;
  }

  /** What it said outside any job (start-up errors, a crash between jobs). */
  diagnostics(): SdDiagnostics {
    const summary = this.#ownOutput.summary;
    return { errorLines: summary.errorLines, stderrTail: summary.stderrTail, pid: this.#pid, program: "sd-server" };
  }

  /**
   * Ends the process (TERM, then KILL after the grace period) and resolves once its exit
   * is confirmed. Idempotent; a process that already exited resolves at once.
   */
  async stop(): Promise<SdServerExit> {
    if (this.#state === "starting" || this.#state === "ready") {
      this.#enter("stopping");
      const child = this.#child;
      child?.kill("SIGTERM");
      const grace = this.launch.killGraceMs ?? defaultKillGraceMs;
      const timer = setTimeout(() => child?.kill("SIGKILL"), grace);
      timer.unref();
      try {
        return await this.#exited;
      } finally {
        clearTimeout(timer);
      }
    }
    return this.#exited;
  }

  // ---------------------------------------------------------------- transitions

  #enter(next: SdServerState): void {
    const allowed: Record<SdServerState, readonly SdServerState[]> = {
      stopped: ["starting", "ready", "stopping"],
      starting: ["stopped"],
      ready: ["starting"],
      stopping: ["starting", "ready"],
    };
    if (!allowed[next].includes(this.#state)) {
      throw new Error(`sd-server cannot go from ${this.#state} to ${next}`);
    }
    this.#state = next;
    for (const listener of this.#stateListeners) listener(next);
  }

  async #start(port: number): Promise<void> {
    const { launch } = this;
    this.#port = port;
    this.#enter("starting");
    const args = [...launch.args, "--listen-ip", "127.0.0.1", "--listen-port", String(port)];
    const child = execa(launch.bin, args, sdSpawnOptions(launch.cwd, launch.env));
    this.#child = child;
    this.#pid = child.pid;
    const stopWatching = killWhenThisProcessExits(child);

    const listening = watchForListening();
    const route = (stream: SdStream) => (chunk: Buffer) => {
      if (this.#state === "starting" && stream === "stdout") listening.push(chunk);
      if (this.#sink) this.#sink(stream, chunk);
      else this.#ownOutput.push(stream, chunk);
    };
    child.stdout?.on("data", route("stdout"));
    child.stderr?.on("data", route("stderr"));

    this.#exited = child.then((result) => {
      stopWatching();
      const exit: SdServerExit = {
        code: result.exitCode ?? undefined,
        signal: result.signal ?? undefined,
      };
      this.#exit = exit;
      this.#enter("stopped");
      return exit;
    });

    if (this.#pid === undefined) {
      const result = await child;
      const code = (result.cause as NodeJS.ErrnoException | undefined)?.code;
      throw new SdSpawnError(launch.bin, code, result.cause, "sd-server");
    }

    try {
      await this.#untilServed(listening.seen, launch.readyTimeoutMs ?? defaultReadyTimeoutMs, launch.signal);
      this.#enter("ready");
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Resolves once it answers as our server; rejects when it exits first, on timeout, on abort. */
  async #untilServed(listening: Promise<void>, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    const done = new AbortController();
    const exited = new AbortController();
    void this.#exited.then(() => exited.abort());
    const deadline = AbortSignal.timeout(timeoutMs);
    // Fires when waiting is pointless: the process exited, the deadline, the caller's abort.
    const stop = AbortSignal.any([deadline, done.signal, exited.signal, ...(signal ? [signal] : [])]);
    const ended = new Promise<void>((resolve) => stop.addEventListener("abort", () => resolve(), { once: true }));
    const expected = stem(this.launch.modelFile);
    try {
      await Promise.race([listening, ended]);
      while (this.#exit === undefined && !stop.aborted) {
        try {
          const answer = await sdServerCall(this.#port, "GET", "/sdapi/v1/options", { signal: stop });
          const checkpoint = answer.status === 200 ? (JSON.parse(answer.text) as { sd_model_checkpoint?: unknown }).sd_model_checkpoint : undefined;
          // Someone else's listener on this port would not name our model.
          if (checkpoint !== expected) throw new PortTakenError(`port ${this.#port} answers, but not as this sd-server`, this.diagnostics());
          if (this.#exit === undefined) return;
        } catch (err) {
          if (this.#exit !== undefined || stop.aborted) break;
          if (err instanceof SdServerConnectionError && err.code === "ECONNREFUSED") {
            await Promise.race([new Promise((resolve) => setTimeout(resolve, connectRetryMs)), ended]);
            continue;
          }
          // Not an sd-server's answer (a listener that speaks no HTTP, a broken reply): not ours.
          throw err instanceof PortTakenError ? err : new PortTakenError(`port ${this.#port}: ${err instanceof Error ? err.message : String(err)}`, this.diagnostics());
        }
      }
      throw this.#whyNotServed(signal, timeoutMs);
    } finally {
      done.abort();
    }
  }

  #whyNotServed(signal: AbortSignal | undefined, timeoutMs: number): Error {
    const exit = this.#exit;
    if (exit) {
      if (exit.code === 0 && exit.signal === undefined) {
        return new PortTakenError(`port ${this.#port} was taken (it printed "listening on" and exited 0)`, this.diagnostics());
      }
      return new SdProcessError(exit.code, exit.signal, this.diagnostics());
    }
    if (signal?.aborted) return new SdAbortedError(signal.reason, this.diagnostics());
    return new SdTimeoutError(timeoutMs, this.diagnostics());
  }
}

/** A port nobody listens on now: bind 0 on loopback, read it, let it go. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves when the stdout text so far contains sd-server's `listening on:` line. */
function watchForListening(): { push(chunk: Buffer): void; seen: Promise<void> } {
  const decoder = new StringDecoder("utf8");
  let text = "";
  let resolve: () => void = () => {};
  const seen = new Promise<void>((r) => (resolve = r));
  return {
    push(chunk) {
      text = (text + decoder.write(chunk)).slice(-4096);
      if (text.includes("listening on: http://")) resolve();
    },
    seen,
  };
}

function stem(file: string): string {
  const base = file.split(/[\\/]/).pop() ?? file;
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}
