import os from "node:os";
import { loadConfig } from "../config/index.js";
import { bootstrap, type Bootstrapped } from "./bootstrap.js";

/**
 * The LangGraph dev server (`npm run studio`) loads two entry points into one process:
 * the graph (graphs/studio.ts) and the HTTP app (src/server/studio-app.ts). Both take
 * what they run with from here, so the process has one GPU scheduler and owns the GPU
 * lock once. Built on first use, from the environment the dev server was started with.
 */
let studio: Bootstrapped | undefined;

export function studioBootstrap(): Bootstrapped {
  if (!studio) {
    studio = bootstrap(loadConfig(), "studio");
    // Here, once, and only in the process that built something: the dev server has no
    // shutdown step for what its graph and HTTP app opened, so without this Ctrl-C ends
    // the process with the job store open (jobs.sqlite-wal/-shm left behind).
    closeOnSignals(studio);
  }
  return studio;
}

/** A repeat of the same signal within this long is the same Ctrl-C, relayed (see below). */
const relayWindowMs = 250;

/**
 * On SIGINT/SIGTERM, closes `studio` (job store, GPU scheduler, GPU owner lock), then
 * lets the process exit as it would have. What a Ctrl-C on `npm run studio` does (seen
 * with strace): the terminal sends SIGINT to the whole foreground group. npm and
 * bin/studio.js wait for their child; the tsx watcher relays SIGINT to this process a
 * second time; the langgraphjs CLI exits (130) and its exit handler sends the watcher
 * SIGTERM, on which the watcher, already stopping this process, SIGKILLs it at once.
 * langgraph-api's entrypoint has exit-hook handlers (`process.once`) that flush its own
 * storage, then call process.exit(128 + n) without waiting for us.
 * So the job store is closed and the lock released synchronously in the handler, before
 * any of that lands (and on 'exit', if still open/held); the watcher's relayed copy of the
 * signal is ignored and a later one exits at once; when nothing else handles the signal,
 * it is raised again once closed (the process dies of it, as it would have).
 */
function closeOnSignals(studio: Bootstrapped): void {
  let first: { signal: NodeJS.Signals; at: number } | undefined;
  const closeStoreNow = () => studio.runner.store.close();
  const onSignal = (signal: NodeJS.Signals) => {
    if (first) {
      // A second signal: the relayed copy of the first is ignored, anything else exits now.
      if (signal === first.signal && Date.now() - first.at < relayWindowMs) return;
      process.exit(128 + (os.constants.signals[signal] ?? 0));
    }
    first = { signal, at: Date.now() };
    // Others (langgraph-api's exit-hook) handle it too: they will end the process.
    const othersExit = process.listenerCount(signal) > 1;
    // Right away, not after a grace period: the CLI's exit makes the tsx watcher SIGKILL
    // this process within milliseconds (see above). Running jobs are cancelled (the store
    // marks a job it never saw end as interrupted on the next start); close() closes the
    // store synchronously, here, then waits for the GPU scheduler. The lock goes now too,
    // not after that wait: a SIGKILL would leave it behind (close() releasing it again is
    // a no-op), and this process gives the GPU up within moments either way.
    studio.runner.close();
    studio.runner.cancelAll("the dev server is shutting down");
    const closed = studio.close();
    studio.lock.release();
    void closed
      .catch((err: unknown) => process.stderr.write(`diffugen: closing the Studio bootstrap failed: ${String(err)}\n`))
      .finally(() => {
        process.removeListener("exit", closeStoreNow);
        if (othersExit) return;
        for (const s of signals) process.removeListener(s, onSignal);
        process.kill(process.pid, signal);
      });
  };
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const s of signals) process.on(s, onSignal);
  process.once("exit", closeStoreNow);
}
