/**
 * DiffuGen as `npm start` runs it, in its own process: `node bin/diffugen.js serve` on the
 * compiled app (dist/, built first when a source is newer), PORT=0, pointed through its
 * environment at the fake Ollama (in this process: another process than the server's, as
 * Ollama is) and at the sd-cli double, sharing one simulated GPU. lib/server-probe.mjs is
 * preloaded into it to note what the server did when (see there); `marks()` fetches the
 * notes over the IPC channel.
 *
 * `appRoot` may be another copy of the app (an older commit unpacked by baseline.ts): its
 * own dist/ is built and started, against the same doubles.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { isAlive, readSpawns, readViolations } from "../../tests/fakes/fake-gpu.mjs";
import { startFakeOllama, type FakeOllama, type FakeOllamaOptions } from "../../tests/fakes/ollama-server.js";
import { LLM_MODEL, repoRoot, SD15_FILE, sdCliDouble } from "../../tests/helpers/stack.js";
import type { Interval } from "./intervals.js";

export interface ProbeMarks {
  admissions: Interval[];
  starts: (Interval & { jobId: string | undefined })[];
  sqlite: Interval[];
  outcomes: { jobId: string; at: number }[];
  spawns: { pid: number | undefined; calledAt: number; returnedAt: number; firstStdoutAt?: number; exitAt?: number }[];
  fetches: Interval[];
}

export interface ServerProcessOptions {
  /** The app to start (default: this checkout). */
  appRoot?: string;
  /** Preload lib/server-probe.mjs (default true); without it `marks()` rejects. */
  probe?: boolean;
  ollama: Omit<FakeOllamaOptions, "gpuDir" | "installed" | "resident">;
  /** The sd-cli double's knobs (FAKE_SD_*), through the server's environment. */
  sdEnv: Record<string, string>;
  /** Probe switches and service variables (DIFFUGEN_BENCH_POLL=old, DIFFUGEN_BENCH_FETCH=1...). */
  env?: Record<string, string>;
}

export interface ServerProcess {
  url: string;
  ollama: FakeOllama;
  gpuDir: string;
  root: string;
  pid: number;
  /** The server's RSS now, in MiB (its fork cost grows with it). */
  rssMiB(): number;
  /** The last 4 KB it wrote to stderr. */
  stderr(): string;
  /** What the probe noted since the last call. */
  marks(): Promise<ProbeMarks>;
  violations(): number;
  close(): Promise<void>;
}

const probe = path.join(repoRoot, "bench/lib/server-probe.mjs");

export async function startServerProcess(options: ServerProcessOptions): Promise<ServerProcess> {
  const appRoot = options.appRoot ?? repoRoot;
  ensureBuilt(appRoot);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-bench-proc-"));
  const gpuDir = path.join(root, "gpu");
  const modelsDir = path.join(root, "models");
  for (const dir of [gpuDir, modelsDir]) fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(modelsDir, SD15_FILE), "");
  const ollama = await startFakeOllama({ ...options.ollama, installed: [LLM_MODEL], resident: [LLM_MODEL], gpuDir });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: "0",
    HOST: "127.0.0.1",
    DATA_DIR: path.join(root, "data"),
    SD_CPP_BIN: sdCliDouble,
    // The path every image took before issue 14 and every preview still takes: a fresh sd-cli.
    SD_BACKEND: "cli",
    MODELS_DIR: modelsDir,
    OUTPUT_DIR: path.join(root, "outputs"),
    OLLAMA_BASE_URL: ollama.url,
    LLM_MODEL,
    DEFAULT_IMAGE_MODEL: "sd15",
    LOG_LEVEL: "warn",
    FAKE_GPU_DIR: gpuDir,
    DIFFUGEN_BENCH_APP_ROOT: appRoot,
    ...options.sdEnv,
    ...options.env,
  };
  for (const name of ["API_KEY", "PUBLIC_BASE_URL", "MODELS_CONFIG", "SD_EXTRA_ARGS", "NODE_OPTIONS", "LLM_RESTORE"]) delete env[name];
  // No GPU here: nvidia-smi must not be found (the server looks on PATH); node still is.
  env.PATH = path.dirname(process.execPath) + path.delimiter + "/usr/bin" + path.delimiter + "/bin";

  // BENCH_SERVER_NODE_ARGS: extra node flags for the server (--cpu-prof, to see where its time goes).
  const nodeArgs = process.env.BENCH_SERVER_NODE_ARGS?.split(" ").filter((a) => a !== "") ?? [];
  const withProbe = options.probe ?? true;
  const child = spawn(process.execPath, [...nodeArgs, ...(withProbe ? ["--import", probe] : []), path.join(appRoot, "bin/diffugen.js"), "serve"], {
    cwd: root,
    env,
    stdio: ["ignore", "pipe", "pipe", ...(withProbe ? (["ipc"] as const) : [])],
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString("utf8")).slice(-4000)));
  let url: string;
  try {
    url = await listeningUrl(child, () => stderr);
  } catch (err) {
    await ollama.close();
    fs.rmSync(root, { recursive: true, force: true });
    throw err;
  }

  return {
    url,
    ollama,
    gpuDir,
    root,
    pid: child.pid!,
    rssMiB: () => Math.round(vmRssKiB(child.pid!) / 1024),
    stderr: () => stderr,
    marks: () => askMarks(child),
    violations: () => readViolations(gpuDir).length,
    async close() {
      await stop(child, 30_000);
      // Whatever the server left running ends here, by pid.
      for (const { pid } of readSpawns(gpuDir)) if (isAlive(pid)) process.kill(pid, "SIGKILL");
      await ollama.close();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

/** A process's resident set (VmRSS in /proc/<pid>/status), in KiB. */
export function vmRssKiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}

/** tsc into appRoot/dist when it is missing or older than a source file. */
export function ensureBuilt(appRoot: string): void {
  const newest = (dir: string): number => {
    let latest = 0;
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) latest = Math.max(latest, newest(full));
      else if (entry.name.endsWith(".ts")) latest = Math.max(latest, fs.statSync(full).mtimeMs);
    }
    return latest;
  };
  const stamp = path.join(appRoot, "dist/src/cli/main.js");
  const sources = Math.max(newest(path.join(appRoot, "src")), newest(path.join(appRoot, "graphs")));
  if (fs.existsSync(stamp) && fs.statSync(stamp).mtimeMs >= sources) return;
  process.stderr.write(`bench: building ${path.relative(process.cwd(), appRoot) || "."}/dist (tsc)...\n`);
  execFileSync(process.execPath, [path.join(repoRoot, "node_modules/typescript/bin/tsc"), "-p", path.join(appRoot, "tsconfig.build.json")], { cwd: appRoot, stdio: "inherit" });
  // tsc leaves an unchanged output file alone: the stamp says this build is current.
  fs.utimesSync(stamp, new Date(), new Date());
}

function listeningUrl(child: ChildProcess, stderr: () => string): Promise<string> {
  let out = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error("diffugen serve printed no URL within 60 s")), 60_000);
    const fail = (e: Error) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`${e.message}\n${stderr()}`));
    };
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString("utf8");
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        child.stdout!.resume();
        resolve(match[1]!);
      }
    });
    child.once("exit", (code, signal) => fail(new Error(`diffugen serve exited (${code ?? signal}) before printing its URL`)));
  });
}

function askMarks(child: ChildProcess): Promise<ProbeMarks> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the server's probe did not answer")), 5_000);
    const onMessage = (message: { type?: string; marks?: ProbeMarks }) => {
      if (message?.type !== "marks" || !message.marks) return;
      clearTimeout(timer);
      child.off("message", onMessage);
      resolve(message.marks);
    };
    child.on("message", onMessage);
    child.send({ type: "marks" });
  });
}

async function stop(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}
