import { spawn, type ChildProcess } from "node:child_process";
import { diffugenCommand } from "./diffugen-command.js";

/**
 * `diffugen serve` as its own process, the way a user or a service manager runs it (see
 * diffugenCommand). Its stdout is collected; the URL is read from the line
 * "DiffuGen listening on http://...".
 */

export interface ServeProcess {
  readonly pid: number;
  readonly url: string;
  /** Everything printed so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout matches (rejects if the process exits first). */
  waitForOutput(pattern: RegExp): Promise<void>;
  /** Resolves with how the process ended. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  signal(name: NodeJS.Signals): void;
  /** SIGKILL if still running (afterEach). */
  kill(): Promise<void>;
}

export async function startServe(env: Record<string, string>, cwd: string): Promise<ServeProcess> {
  const command = diffugenCommand("serve");
  const child: ChildProcess = spawn(command.file, command.args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  const listeners = new Set<() => void>();
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    out += chunk;
    for (const listener of listeners) listener();
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      done = true;
      for (const listener of listeners) listener();
      resolve({ code, signal });
    }),
  );

  const waitForOutput = (pattern: RegExp) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (pattern.test(out)) {
          listeners.delete(check);
          resolve();
        } else if (done) {
          listeners.delete(check);
          reject(new Error(`diffugen serve exited before printing ${pattern}\nstdout:\n${out}\nstderr:\n${err}`));
        }
      };
      listeners.add(check);
      check();
    });

  const pid = child.pid!;
  const stop = async () => {
    if (!done) child.kill("SIGKILL");
    await exited;
  };
  try {
    await waitForOutput(/DiffuGen listening on (http:\/\/\S+)/);
  } catch (error) {
    await stop();
    throw error;
  }
  const url = /DiffuGen listening on (http:\/\/\S+)/.exec(out)![1]!;
  return {
    pid,
    url,
    stdout: () => out,
    stderr: () => err,
    waitForOutput,
    exited,
    signal: (name) => child.kill(name),
    kill: stop,
  };
}
