import { spawn } from "node:child_process";

/**
 * One sd-cli process, started with node's own spawn (execa cost about 1.5 ms of setup
 * before the fork and more after the exit, on the path of every image; npm run bench,
 * orchestration), and settled only once it is gone and its output read to the end.
 *
 * Ended on cancel or timeout with SIGTERM, then SIGKILL after `killGraceMs`. It runs in its
 * own process group, so a Ctrl-C in the terminal (or systemd's SIGTERM to the control
 * group) does not reach it before the server decides; because of that, it is also killed
 * if this process exits first.
 */

export interface SdProcessOptions {
  cwd: string;
  /** Added to this process's environment (undefined values are left out). */
  env?: Record<string, string | undefined> | undefined;
  /** Ends the process (SIGTERM, then SIGKILL). */
  cancelSignal: AbortSignal;
  timeoutMs?: number | undefined;
  killGraceMs: number;
  onStdout: (chunk: Buffer) => void;
  onStderr: (chunk: Buffer) => void;
}

export interface SdProcessEnd {
  /** Undefined when it could not be started. */
  pid: number | undefined;
  exitCode: number | undefined;
  signal: NodeJS.Signals | undefined;
  /** Ended because `cancelSignal` aborted. */
  canceled: boolean;
  timedOut: boolean;
  /** Why it could not be started (ENOENT, EACCES...). */
  spawnError: NodeJS.ErrnoException | undefined;
}

export interface SdProcess {
  pid: number | undefined;
  /** When the process exited (performance.now()), once it has. */
  exitedAt(): number | undefined;
  /** Settles once the process is gone and both output streams have ended; never rejects. */
  done: Promise<SdProcessEnd>;
}

export function startSdProcess(bin: string, args: readonly string[], options: SdProcessOptions): SdProcess {
  const child = spawn(bin, [...args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: process.platform !== "win32",
    windowsHide: true,
  });
  // Chunks go on as the pipe hands them over: no line buffering here.
  child.stdout?.on("data", options.onStdout);
  child.stderr?.on("data", options.onStderr);

  let canceled = false;
  let timedOut = false;
  let exitedAt: number | undefined;
  let forceKill: NodeJS.Timeout | undefined;
  const running = () => child.exitCode === null && child.signalCode === null;
  const end = () => {
    if (!running() || child.pid === undefined) return;
    child.kill("SIGTERM");
    // sd-cli has no signal handlers, so SIGTERM ends it at once; SIGKILL is the backstop.
    forceKill ??= setTimeout(() => {
      if (running()) child.kill("SIGKILL");
    }, options.killGraceMs);
  };
  const onCancel = () => {
    canceled = true;
    end();
  };
  const timeout =
    options.timeoutMs && options.timeoutMs > 0
      ? setTimeout(() => {
          timedOut = true;
          end();
        }, options.timeoutMs)
      : undefined;
  // Detached: this process's end must take sd-cli with it.
  const killOnExit = () => {
    if (running()) child.kill("SIGKILL");
  };
  process.once("exit", killOnExit);
  if (options.cancelSignal.aborted) onCancel();
  else options.cancelSignal.addEventListener("abort", onCancel, { once: true });
  child.once("exit", () => (exitedAt = performance.now()));

  const done = new Promise<SdProcessEnd>((resolve) => {
    let settled = false;
    const finish = (spawnError: NodeJS.ErrnoException | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timeout);
      clearTimeout(forceKill);
      options.cancelSignal.removeEventListener("abort", onCancel);
      process.removeListener("exit", killOnExit);
      resolve({
        pid: spawnError ? undefined : child.pid,
        exitCode: child.exitCode ?? undefined,
        signal: child.signalCode ?? undefined,
        canceled,
        timedOut,
        spawnError,
      });
    };
    // 'close' comes after the exit and the end of both streams: the parser has every byte.
    // A spawn failure ('error' with no pid) comes before its 'close'.
    child.once("error", (err: NodeJS.ErrnoException) => {
      if (child.pid === undefined) finish(err);
    });
    child.once("close", () => finish(undefined));
  });
  return { pid: child.pid, exitedAt: () => exitedAt, done };
}
