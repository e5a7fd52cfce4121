import { createDiffugenDeps, type DiffugenDeps } from "../../graphs/diffugen/dependencies.js";
import type { Config } from "../config/index.js";
import { acquireGpuOwnerLock, BypassWatchdog, type GpuOwnerLock, type GpuScheduler } from "../gpu/index.js";
import { JobRunner, type JobRunnerOptions } from "../jobs/index.js";
import { OllamaProbe } from "../llm/index.js";
import { createLogger, type DestinationStream } from "../logging/index.js";

/**
 * The composition root: the one place where an entry point (serve, generate, the Studio
 * dev server) becomes the GPU's owner and builds what it runs with. Everything below gets
 * its dependencies passed in; nothing is kept on globalThis.
 */

/** Who owns the GPU, as the lock file names it (a second DiffuGen process is told who). */
export const roles = {
  serve: "diffugen serve",
  generate: "diffugen generate",
  studio: "LangGraph dev server (npm run studio)",
} as const;
export type Role = keyof typeof roles;

export interface Bootstrapped {
  deps: DiffugenDeps;
  /** Runs the graph for requests and journals every job (DATA_DIR/jobs.sqlite). */
  runner: JobRunner;
  lock: GpuOwnerLock;
  /** Warns of models loaded in Ollama behind DiffuGen's back while diffusion runs (/health shows its count). */
  gate: BypassWatchdog;
  /**
   * Ends what bootstrap started: the job store closes, the GPU scheduler waits for the LLM
   * to be back in VRAM, the gate watchdog stops, the lock goes. Idempotent.
   */
  close(): Promise<void>;
}

export interface BootstrapOptions extends JobRunnerOptions {
  /** Capabilities to use instead of the ones built from the config (tests, benchmarks). */
  deps?: Partial<DiffugenDeps> | undefined;
  /**
   * Where every JSON log line of this process goes (the capabilities' and the gate
   * watchdog's). Default: stderr. `diffugen generate` passes a file, or its bars' log.
   */
  logDestination?: DestinationStream | undefined;
}

export function bootstrap(config: Config, role: Role, options: BootstrapOptions = {}): Bootstrapped {
  // First: a second DiffuGen process on this box is refused before it touches anything.
  const lock = acquireGpuOwnerLock(config.dataDir, roles[role]);
  try {
    const deps = createDiffugenDeps(config, options.deps, { logDestination: options.logDestination });
    const runner = JobRunner.open(deps, { store: options.store });
    const gate = watchGate(config, deps.scheduler, options.logDestination);
    let closing: Promise<void> | undefined;
    const close = async () => {
      await runner.dispose();
      // The LLM comes back after the last image; the burst's sd-server has gone by then.
      await deps.scheduler.close();
      await deps.backends.release("shutdown");
      gate.stop();
      lock.release();
    };
    return { deps, runner, lock, gate, close: () => (closing ??= close()) };
  } catch (err) {
    lock.release();
    throw err;
  }
}

/**
 * The watchdog for clients that reach Ollama without DiffuGen: it reads /api/ps with a
 * probe of its own (read-only, like /health's) and warns on the JSON log, saying where
 * such a client should point instead.
 */
function watchGate(config: Config, scheduler: GpuScheduler, destination: DestinationStream | undefined): BypassWatchdog {
  const log = createLogger({ level: config.logLevel, destination }).child({ component: "gate" });
  // A server listening on every address is reached on the loopback one.
  const { host, port } = config.server;
  const shownHost = host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "[::1]" : host.includes(":") ? `[${host}]` : host;
  return new BypassWatchdog({
    scheduler,
    probe: new OllamaProbe(config.llm, { requestTimeoutMs: 2_000 }),
    warn: (message, bypass) => log.warn({ event: "gate_bypass", model: bypass.model, job_id: bypass.jobId }, message),
    advice:
      `Route that client through DiffuGen: set its Ollama base URL to http://${shownHost}:${port}/ollama ` +
      `(the ollama CLI: OLLAMA_HOST=127.0.0.1:11435, DiffuGen's OLLAMA_GATEWAY_PORT).`,
  });
}
