import { execSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { execa, type ResultPromise } from "execa";
import { envSchema } from "../../src/config/env-schema.js";
import { freePort } from "../helpers/ports.js";
export { freePort };

/**
 * `langgraphjs dev` as Studio users start it (`npm run studio`), run as a real process tree
 * for a test: its own process group, so stopping it ends the CLI, the tsx loader and the
 * API server it spawns, and whatever they spawned.
 */

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const cliBin = path.join(repoRoot, "node_modules/.bin/langgraphjs");

export interface LangGraphConfig {
  graphs: Record<string, string>;
  env?: unknown;
  http?: { app?: string } & Record<string, unknown>;
  auth?: { path?: string } & Record<string, unknown>;
  [key: string]: unknown;
}

export function readRepoConfig(): LangGraphConfig {
  return JSON.parse(fs.readFileSync(path.join(repoRoot, "langgraph.json"), "utf8")) as LangGraphConfig;
}

/**
 * `./file.ts:export` (relative to the repository) → the same file relative to `dir`.
 * Relative, not absolute: the API server's preload `path.join`s the first graph path onto
 * the config folder to find the project's `@langchain/langgraph`.
 */
function specFrom(dir: string, spec: string): string {
  const [file, exportName] = spec.split(":", 2);
  const relative = path.relative(dir, path.resolve(repoRoot, file ?? ""));
  return exportName === undefined ? relative : `${relative}:${exportName}`;
}

/**
 * A copy of the repository's langgraph.json in `dir`, for `--config`: the same graphs and
 * HTTP app (the CLI resolves their paths against the config file's folder), but no `env`,
 * so a developer's .env cannot change what the test runs. The dev server also keeps its
 * storage (`.langgraph_api`) and its `.gitignore` edit in `dir`.
 */
export function writeTestConfig(dir: string): string {
  const { env: _env, ...config } = readRepoConfig();
  const rebase = (spec: string) => specFrom(dir, spec);
  const copy: LangGraphConfig = {
    ...config,
    graphs: Object.fromEntries(Object.entries(config.graphs).map(([id, spec]) => [id, rebase(spec)])),
  };
  if (config.http?.app) copy.http = { ...config.http, app: rebase(config.http.app) };
  if (config.auth?.path) copy.auth = { ...config.auth, path: rebase(config.auth.path) };
  const file = path.join(dir, "langgraph.json");
  fs.writeFileSync(file, JSON.stringify(copy, null, 2));
  return file;
}


/**
 * The environment of the dev server: this process's, without anything DiffuGen, the API
 * layer or LangSmith would read from it (a developer's shell must not change the test),
 * plus `env`.
 */
export function isolatedEnv(env: Record<string, string>): Record<string, string> {
  const ours = new Set([...Object.keys(envSchema.shape), "API_KEY", "PUBLIC_BASE_URL", "MAX_BODY_MB"]);
  const inherited = Object.entries(process.env).filter(
    (entry): entry is [string, string] =>
      entry[1] !== undefined && !ours.has(entry[0]) && !/^(LANGSMITH_|LANGCHAIN_|LANGGRAPH_|FAKE_SD_|FAKE_GPU_)/.test(entry[0]),
  );
  return { ...Object.fromEntries(inherited), LANGGRAPH_CLI_NO_ANALYTICS: "1", BROWSER: "none", ...env };
}

export interface DevServer {
  url: string;
  pid: number;
  /** Everything the process tree printed so far. */
  log(): string;
  /** Ends the whole process group (SIGTERM, then SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<void>;
  /** Processes still alive in the group (none after stop). */
  remaining(): string[];
  /**
   * Sends `signal` to the whole process group, as a terminal's Ctrl-C does (SIGINT), and
   * resolves once no process of the group is left, or after `timeoutMs`: true if none is.
   */
  interrupt(signal?: NodeJS.Signals, timeoutMs?: number): Promise<boolean>;
}

const logLimit = 200_000;

export async function startDevServer(options: {
  configFile: string;
  port: number;
  env: Record<string, string>;
  readyTimeoutMs?: number;
  /** Reload on code changes (the tsx watcher), as `npm run studio` runs it. Default: off. */
  reload?: boolean;
}): Promise<DevServer> {
  const url = `http://127.0.0.1:${options.port}`;
  const child: ResultPromise = execa(
    cliBin,
    ["dev", "--no-browser", ...(options.reload ? [] : ["--no-reload"]), "--port", String(options.port), "--host", "127.0.0.1", "--config", options.configFile],
    {
      cwd: repoRoot,
      env: isolatedEnv(options.env),
      extendEnv: false,
      detached: true,
      stdin: "ignore",
      all: true,
      buffer: false,
      reject: false,
    },
  );
  let output = "";
  child.all?.setEncoding("utf8");
  child.all?.on("data", (text: string) => {
    output = (output + text).slice(-logLimit);
  });
  let exited: string | undefined;
  void child.then((result) => {
    exited = `exited (code ${String(result.exitCode)}, signal ${String(result.signal)})`;
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`langgraphjs dev did not start:\n${output}`);

  const groupAlive = () => {
    try {
      process.kill(-pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const remaining = () => {
    const table = execSync("ps -eo pid=,pgid=,args=", { encoding: "utf8" });
    return table
      .split("\n")
      .map((line) => line.trim().split(/\s+/))
      .filter(([, pgid]) => pgid === String(pid))
      .map(([procPid, , ...args]) => `${procPid} ${args.join(" ")}`);
  };
  // Last resort if the test process ends without stop() (a killed or interrupted run):
  // the group is detached, so nothing else would end it.
  const killOnExit = () => {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // already gone
    }
  };
  process.once("exit", killOnExit);
  const server: DevServer = {
    url,
    pid,
    log: () => output,
    remaining,
    async interrupt(signal = "SIGINT", timeoutMs = 10_000) {
      if (groupAlive()) process.kill(-pid, signal);
      const deadline = Date.now() + timeoutMs;
      while (groupAlive() && Date.now() < deadline) await sleep(20);
      return !groupAlive();
    },
    async stop(graceMs = 5_000) {
      if (!groupAlive()) return void process.off("exit", killOnExit);
      process.kill(-pid, "SIGTERM");
      const deadline = Date.now() + graceMs;
      while (groupAlive() && Date.now() < deadline) await sleep(50);
      if (groupAlive()) process.kill(-pid, "SIGKILL");
      const killDeadline = Date.now() + 5_000;
      while (groupAlive() && Date.now() < killDeadline) await sleep(20);
      await child.catch(() => undefined);
      process.off("exit", killOnExit);
    },
  };

  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  for (;;) {
    if (exited) {
      await server.stop();
      throw new Error(`langgraphjs dev ${exited} before serving:\n${output}`);
    }
    try {
      const response = await fetch(`${url}/ok`, { signal: AbortSignal.timeout(2_000) });
      if (response.ok) return server;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`langgraphjs dev did not serve ${url}/ok within ${options.readyTimeoutMs ?? 60_000} ms:\n${output}`);
    }
    await sleep(200);
  }
}
