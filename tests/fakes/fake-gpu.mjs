// @ts-check
/**
 * A simulated 8 GB GPU shared by the test doubles (the fake sd-cli executable and the
 * fake Ollama server). It lives in a directory so two processes can share it:
 *
 *   llm-resident.json   {"models": [...]}  models Ollama holds in VRAM (written by the
 *                       Ollama double, atomically; a model lingering after unload counts)
 *   sd-<pid>.running    one per sd-cli double that is loading/sampling, or sd-server double
 *                       holding weights (removed at exit)
 *   violations.jsonl    one line per broken invariant, by either double
 *   spawns.jsonl        one line per sd-cli double start: {pid, argv, at}
 *
 * Tests assert readViolations(dir) is empty.
 */
import fs from "node:fs";
import path from "node:path";

const RESIDENT = "llm-resident.json";

/** @param {string} dir @param {string[]} models */
export function setResidentModels(dir, models) {
  const tmp = path.join(dir, `${RESIDENT}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, JSON.stringify({ models }));
  fs.renameSync(tmp, path.join(dir, RESIDENT));
}

/** @param {string} dir @returns {string[]} */
export function residentModels(dir) {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, RESIDENT), "utf8")).models ?? [];
  } catch {
    return [];
  }
}

/** @param {string} dir @param {number} pid */
export function markDiffusionStarted(dir, pid) {
  fs.writeFileSync(path.join(dir, `sd-${pid}.running`), String(Date.now()));
}

/** @param {string} dir @param {number} pid */
export function markDiffusionEnded(dir, pid) {
  fs.rmSync(path.join(dir, `sd-${pid}.running`), { force: true });
}

/** @param {number} pid */
export function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return /** @type {NodeJS.ErrnoException} */ (err).code === "EPERM";
  }
}

/**
 * Pids of sd-cli doubles that hold the GPU now. A double killed with SIGKILL cannot
 * remove its marker, so a marker whose process is gone does not count.
 * @param {string} dir @returns {number[]}
 */
export function runningDiffusions(dir) {
  let names = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .map((n) => /^sd-(\d+)\.running$/.exec(n))
    .filter((m) => m !== null)
    .map((m) => Number(/** @type {RegExpExecArray} */ (m)[1]))
    .filter(isAlive);
}

/** @param {string} dir @param {"ollama" | "sd-cli" | "sd-server"} by @param {string} what */
export function recordViolation(dir, by, what) {
  fs.appendFileSync(path.join(dir, "violations.jsonl"), JSON.stringify({ at: Date.now(), by, what }) + "\n");
}

/** @param {string} dir @returns {{at: number, by: string, what: string}[]} */
export function readViolations(dir) {
  return readJsonLines(path.join(dir, "violations.jsonl"));
}

/** @param {string} dir @param {number} pid @param {string[]} argv */
export function recordSpawn(dir, pid, argv) {
  fs.appendFileSync(path.join(dir, "spawns.jsonl"), JSON.stringify({ at: Date.now(), pid, argv }) + "\n");
}

/** @param {string} dir @returns {{at: number, pid: number, argv: string[]}[]} */
export function readSpawns(dir) {
  return readJsonLines(path.join(dir, "spawns.jsonl"));
}

/** @param {string} file */
function readJsonLines(file) {
  let text = "";
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l));
}
