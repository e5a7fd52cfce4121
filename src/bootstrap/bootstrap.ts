import { createDiffugenDeps, type DiffugenDeps } from "../../graphs/diffugen/dependencies.js";
import type { Config } from "../config/index.js";
import { acquireGpuOwnerLock, type GpuOwnerLock } from "../gpu/index.js";
import { JobRunner, type JobRunnerOptions } from "../jobs/index.js";

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
  /**
   * Ends what bootstrap started: the job store closes, the GPU scheduler waits for the LLM
   * to be back in VRAM, the lock goes. Idempotent.
   */
  close(): Promise<void>;
}

export interface BootstrapOptions extends JobRunnerOptions {
  /** Capabilities to use instead of the ones built from the config (tests, benchmarks). */
  deps?: Partial<DiffugenDeps> | undefined;
}

export function bootstrap(config: Config, role: Role, options: BootstrapOptions = {}): Bootstrapped {
  // First: a second DiffuGen process on this box is refused before it touches anything.
  const lock = acquireGpuOwnerLock(config.dataDir, roles[role]);
  try {
    const deps = createDiffugenDeps(config, options.deps);
    const runner = JobRunner.open(deps, { store: options.store });
    let closing: Promise<void> | undefined;
    const close = async () => {
      await runner.dispose();
      await deps.scheduler.close();
      lock.release();
    };
    return { deps, runner, lock, close: () => (closing ??= close()) };
  } catch (err) {
    lock.release();
    throw err;
  }
}
