import fs from "node:fs";
import path from "node:path";

/**
 * One GPU, one owner across processes. The GPU scheduler keeps the VRAM invariant inside
 * one process; two processes (say `diffugen serve` and the LangGraph Studio dev server)
 * would each believe they own the GPU and break it. So the process that builds a
 * scheduler first takes this lock, a file holding its pid; another DiffuGen process on
 * the same DATA_DIR is refused with a message naming the owner. A lock left by a process
 * that died is taken over.
 */

export class GpuOwnedElsewhereError extends Error {
  constructor(
    readonly ownerPid: number,
    readonly ownerDescription: string,
    readonly lockFile: string,
  ) {
    super(
      `Another DiffuGen process (pid ${ownerPid}, ${ownerDescription}) is driving this GPU. ` +
        `Send requests to it, or stop it first (lock: ${lockFile}).`,
    );
    this.name = "GpuOwnedElsewhereError";
  }
}

export interface GpuOwnerLock {
  readonly file: string;
  release(): void;
}

interface LockContent {
  pid: number;
  description: string;
  since: string;
}

/** Takes the lock for this process (idempotent within it) or throws GpuOwnedElsewhereError. */
export function acquireGpuOwnerLock(dataDir: string, description: string): GpuOwnerLock {
  fs.mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, "gpu-owner.lock");
  const content: LockContent = { pid: process.pid, description, since: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.writeFileSync(file, JSON.stringify(content), { flag: "wx" });
      return ownerLock(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const holder = readLock(file);
    if (holder?.pid === process.pid) return ownerLock(file);
    if (holder && isAlive(holder.pid)) throw new GpuOwnedElsewhereError(holder.pid, holder.description, file);
    // The owner died without cleaning up: remove its lock and race for it again.
    fs.rmSync(file, { force: true });
  }
  throw new Error(`could not take the GPU owner lock ${file}`);
}

function ownerLock(file: string): GpuOwnerLock {
  const release = () => {
    if (readLock(file)?.pid === process.pid) fs.rmSync(file, { force: true });
  };
  process.once("exit", release);
  return {
    file,
    release() {
      process.removeListener("exit", release);
      release();
    },
  };
}

function readLock(file: string): LockContent | undefined {
  try {
    const parsed = JSON.parse(fs.readFileSync(file, "utf8")) as Partial<LockContent>;
    return typeof parsed.pid === "number" ? { pid: parsed.pid, description: String(parsed.description ?? "unknown"), since: String(parsed.since ?? "") } : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
