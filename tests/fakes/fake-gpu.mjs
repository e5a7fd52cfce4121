// @ts-check
/**
 * The simulated GPU shared by the test doubles (the sd-cli and sd-server doubles, the fake
 * Ollama, the fake nvidia-smi and rocm-smi). It lives in a directory so several processes can
 * share it:
 *
 *   llm-resident.json   {"models": [...]}  models Ollama holds in VRAM (written by the
 *                       Ollama double, atomically; a model lingering after unload counts)
 *   sd-<pid>.running    one per sd-cli double that is loading/sampling, or sd-server double
 *                       holding weights (removed at exit; a dead pid's marker does not count)
 *   spawns.jsonl        one line per sd double start: {pid, argv, at}
 *   violations.jsonl    one line per broken invariant: {at, by, what}
 *   oom.jsonl           one line per out-of-memory an sd double printed: {at, by, pid, ...}
 *   card.json           the card, when the test defines one (setCard): {totalMiB, name,
 *                       baseMiB, reservedMiB, driverVersion, uuid}
 *   claim-<holder>.json one per holder of VRAM on that card: {holder, kind, pid, ownerPid,
 *                       mib, processName, label, at}; written under claims.lock
 *   bin/nvidia-smi, bin/rocm-smi   wrappers of the fake tools bound to this directory
 *                       (installNvidiaSmi / installRocmSmi)
 *
 * TWO MODES. Every double reads card.json when it checks, so a test picks the mode by calling
 * setCard(dir, ...) (or not) before the doubles act.
 *
 * Without a card (the default, every test written before issue 15): the strict rule "the LLM
 * or the diffusion model, never both".
 *   - violation: an sd double starts (sd-cli) or loads weights (sd-server) while an LLM is
 *     resident (it then fails with the CUDA out-of-memory text); an LLM loads, or any chat or
 *     generate call reaches Ollama, while an sd double holds its marker.
 *   - No claims are written; the fake nvidia-smi / rocm-smi find no device.
 *
 * With a card: "never over the card's memory". used = baseMiB + the sum of live claims;
 * free = totalMiB - reservedMiB - used.
 *   - Claims are refused or trimmed, so the sum of claims never exceeds what the card has.
 *     A claim is taken under an exclusive lock file (claims.lock, created with O_EXCL), so an
 *     sd double's child process and the Ollama double in the test process cannot both take
 *     the last free MiB.
 *   - An sd double claims its need when the weights go to the GPU (sd-cli: the UNet load after
 *     `generating image: 1/N`; sd-server: the first request's UNet load, held until it exits,
 *     raised when a later request needs more). A claim that does not fit is REFUSED: the
 *     double prints the real CUDA out-of-memory output and fails (sd-cli exit 1; sd-server
 *     500 `generate_image returned no results`, the server keeps running), and the attempt is
 *     recorded in oom.jsonl. It is NOT a violation: nothing went over the card. A product test
 *     counts OOMs with readOoms(dir): zero, except where it provokes one (an underestimate).
 *   - The Ollama double claims each model's VRAM while it is listed in /api/ps (lingering
 *     included, and vramReleaseLagMs longer if asked: the driver's late give-back). Set the
 *     card before the Ollama double loads anything (a model loaded with no card holds no
 *     claim). A model that does not fit is PARTLY OFFLOADED, as Ollama does: it gets what
 *     is free, and /api/ps reports that as size_vram (< size). That is no OOM. It is a
 *     VIOLATION when an sd double holds a claim at that moment: the product loaded the LLM
 *     beside a diffusion job that left it no room. A model too big for the card alone is not.
 *   - A sum of claims above the card (only possible when a test shrinks the card under
 *     existing claims) is also recorded as a violation, by whoever claims next.
 *   - Chat calls while an sd double runs are allowed (that is the point of the fit policy).
 *   - The sd-<pid>.running markers are still written, with no violation attached.
 *   - A claim whose owner process is dead (an sd double killed with SIGKILL) no longer counts.
 *
 * Tests assert readViolations(dir) is empty (and, with a card, readOoms(dir) too).
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export { VRAM_NEEDS, vramNeedMiB, vramNeedFromEnv } from "./sd-cli/models.mjs";

const RESIDENT = "llm-resident.json";
const CARD = "card.json";
const LOCK = "claims.lock";
const HERE = path.dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------------------------
// the strict mode's state (no card): who is resident, who runs
// ---------------------------------------------------------------------------------------------

/** @param {string} dir @param {string[]} models */
export function setResidentModels(dir, models) {
  writeAtomically(path.join(dir, RESIDENT), JSON.stringify({ models }));
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

// ---------------------------------------------------------------------------------------------
// the card
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} CardSpec
 * @property {number} totalMiB          memory.total as nvidia-smi prints it
 * @property {string} [name]            default by size (an RTX 4060 Laptop GPU up to 8 GB...)
 * @property {number} [baseMiB]         used by the driver and the desktop, never by a process nvidia-smi
 *                                      lists as a compute app (default 300)
 * @property {number} [reservedMiB]     memory.reserved: neither used nor free (default 0)
 * @property {string} [driverVersion]   default "550.54.14"
 * @property {string} [uuid]
 */
/** @typedef {Required<CardSpec>} Card */

/** Two cards issue 15 is tested on: their memory.total as the real ones report it. */
export const CARDS = Object.freeze({
  "8GB": Object.freeze({ totalMiB: 8188, name: "NVIDIA GeForce RTX 4060 Laptop GPU" }),
  "12GB": Object.freeze({ totalMiB: 12288, name: "NVIDIA GeForce RTX 3060" }),
});

/** @param {number} totalMiB */
function defaultName(totalMiB) {
  if (totalMiB <= 8192) return "NVIDIA GeForce RTX 4060 Laptop GPU";
  if (totalMiB <= 12288) return "NVIDIA GeForce RTX 3060";
  if (totalMiB <= 16384) return "NVIDIA GeForce RTX 4060 Ti";
  return "NVIDIA GeForce RTX 4090";
}

/**
 * Defines the card (claims become checked against it), or removes it with null (back to the
 * strict "never both" rule). Claims already held are kept.
 * @param {string} dir @param {CardSpec | null} spec
 */
export function setCard(dir, spec) {
  const file = path.join(dir, CARD);
  if (spec === null) {
    fs.rmSync(file, { force: true });
    return;
  }
  if (!(Number.isInteger(spec.totalMiB) && spec.totalMiB > 0)) throw new Error(`fake gpu: totalMiB must be a positive integer, not ${spec.totalMiB}`);
  /** @type {Card} */
  const card = {
    totalMiB: spec.totalMiB,
    name: spec.name ?? defaultName(spec.totalMiB),
    baseMiB: spec.baseMiB ?? 300,
    reservedMiB: spec.reservedMiB ?? 0,
    driverVersion: spec.driverVersion ?? "550.54.14",
    uuid: spec.uuid ?? "GPU-5f3c1d2e-8a41-4b7e-9c0d-2e6f7a8b9c10",
  };
  writeAtomically(file, JSON.stringify(card));
}

/** The card, or undefined in the strict mode. @param {string} dir @returns {Card | undefined} */
export function readCard(dir) {
  try {
    const card = JSON.parse(fs.readFileSync(path.join(dir, CARD), "utf8"));
    return card && typeof card.totalMiB === "number" ? card : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// claims
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} Claim
 * @property {string} holder        "sd-<pid>" or "llm-<model>"
 * @property {"sd" | "llm"} kind
 * @property {number} pid           the pid nvidia-smi lists
 * @property {number} ownerPid      the process whose death ends the claim
 * @property {number} mib
 * @property {string} processName   nvidia-smi's process_name
 * @property {string} label         what holds it (model, size)
 * @property {number} at
 */

/**
 * @typedef {object} ClaimRequest
 * @property {string} holder
 * @property {"sd" | "llm"} kind
 * @property {number} mib            wanted, in total (a second claim by the same holder replaces the first)
 * @property {number} [pid]          default: ownerPid
 * @property {number} [ownerPid]     default: this process
 * @property {string} [processName]
 * @property {string} [label]
 * @property {boolean} [partial]     grant what is free instead of refusing (Ollama's CPU offload)
 */

/**
 * @typedef {{ ok: true, mib: number, wantedMiB: number, freeMiB: number }
 *   | { ok: false, mib: 0, wantedMiB: number, freeMiB: number, holders: Claim[] }} ClaimResult
 * freeMiB: what the card had free for this holder before the claim (its own old claim counted free).
 */

/** @param {string} holder */
export const claimFile = (holder) => `claim-${encodeURIComponent(holder)}.json`;
/** @param {number} pid */
export const sdHolder = (pid) => `sd-${pid}`;
/** @param {string} model */
export const llmHolder = (model) => `llm-${model}`;

/**
 * Live claims (a dead owner's claim does not count).
 * @param {string} dir @returns {Claim[]}
 */
export function claims(dir) {
  let names = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  /** @type {Claim[]} */
  const out = [];
  for (const name of names) {
    if (!/^claim-.*\.json$/.test(name)) continue;
    try {
      /** @type {Claim} */
      const c = JSON.parse(fs.readFileSync(path.join(dir, name), "utf8"));
      if (isAlive(c.ownerPid)) out.push(c);
    } catch {
      // removed meanwhile
    }
  }
  return out.sort((a, b) => a.at - b.at || a.holder.localeCompare(b.holder));
}

/**
 * Takes (or changes) a holder's claim on the card, atomically against every other claimer.
 * Without a card it is granted unchecked (the strict mode does not count memory).
 * @param {string} dir @param {ClaimRequest} req @returns {ClaimResult}
 */
export function claim(dir, req) {
  const wanted = Math.max(0, Math.ceil(req.mib));
  return withClaimsLock(dir, () => {
    const card = readCard(dir);
    const others = claims(dir).filter((c) => c.holder !== req.holder);
    const othersMiB = others.reduce((n, c) => n + c.mib, 0);
    const free = card ? card.totalMiB - card.reservedMiB - card.baseMiB - othersMiB : Infinity;
    if (card && free < 0) {
      recordViolation(dir, req.kind === "sd" ? "sd" : "ollama", `the claims add up to more than the card: ${card.totalMiB} MiB total, ${card.reservedMiB + card.baseMiB + othersMiB} MiB used before ${req.holder} claims`);
    }
    const room = Math.max(0, free);
    const granted = wanted <= room ? wanted : req.partial ? room : -1;
    if (granted < 0) return { ok: false, mib: 0, wantedMiB: wanted, freeMiB: room, holders: others };
    const ownerPid = req.ownerPid ?? process.pid;
    /** @type {Claim} */
    const c = {
      holder: req.holder,
      kind: req.kind,
      pid: req.pid ?? ownerPid,
      ownerPid,
      mib: granted,
      processName: req.processName ?? process.argv[1] ?? "node",
      label: req.label ?? req.holder,
      at: Date.now(),
    };
    writeAtomically(path.join(dir, claimFile(req.holder)), JSON.stringify(c));
    return { ok: true, mib: granted, wantedMiB: wanted, freeMiB: Number.isFinite(room) ? room : Number.MAX_SAFE_INTEGER };
  });
}

/** Gives a holder's claim back (nothing if it holds none). @param {string} dir @param {string} holder */
export function release(dir, holder) {
  fs.rmSync(path.join(dir, claimFile(holder)), { force: true });
}

/** The live claim of one holder. @param {string} dir @param {string} holder @returns {Claim | undefined} */
export function claimOf(dir, holder) {
  return claims(dir).find((c) => c.holder === holder);
}

/** memory.used: the base plus every live claim (0 without a card). @param {string} dir */
export function usedMiB(dir) {
  const card = readCard(dir);
  if (!card) return 0;
  return card.baseMiB + claims(dir).reduce((n, c) => n + c.mib, 0);
}

/** memory.free: total - reserved - used, never below 0 (0 without a card). @param {string} dir */
export function freeMiB(dir) {
  const card = readCard(dir);
  if (!card) return 0;
  return Math.max(0, card.totalMiB - card.reservedMiB - usedMiB(dir));
}

/**
 * Everything at once, for assertions and for the fake tools: the card, the live claims, and
 * per-process rows as nvidia-smi lists them (claims of one pid added up, in claim order).
 * @param {string} dir
 */
export function ledger(dir) {
  const card = readCard(dir);
  const live = card ? claims(dir) : [];
  const claimedMiB = live.reduce((n, c) => n + c.mib, 0);
  const used = card ? card.baseMiB + claimedMiB : 0;
  /** @type {Map<number, { pid: number, usedMiB: number, processName: string }>} */
  const byPid = new Map();
  for (const c of live) {
    const row = byPid.get(c.pid);
    if (row) row.usedMiB += c.mib;
    else byPid.set(c.pid, { pid: c.pid, usedMiB: c.mib, processName: c.processName });
  }
  return {
    card,
    claims: live,
    llmMiB: live.filter((c) => c.kind === "llm").reduce((n, c) => n + c.mib, 0),
    sdMiB: live.filter((c) => c.kind === "sd").reduce((n, c) => n + c.mib, 0),
    usedMiB: used,
    freeMiB: card ? Math.max(0, card.totalMiB - card.reservedMiB - used) : 0,
    processes: [...byPid.values()],
  };
}

// ---------------------------------------------------------------------------------------------
// records
// ---------------------------------------------------------------------------------------------

/** @param {string} dir @param {"ollama" | "sd-cli" | "sd-server" | "sd"} by @param {string} what */
export function recordViolation(dir, by, what) {
  fs.appendFileSync(path.join(dir, "violations.jsonl"), JSON.stringify({ at: Date.now(), by, what }) + "\n");
}

/** @param {string} dir @returns {{at: number, by: string, what: string}[]} */
export function readViolations(dir) {
  return readJsonLines(path.join(dir, "violations.jsonl"));
}

/**
 * @typedef {object} OomRecord
 * @property {number} at
 * @property {"sd-cli" | "sd-server"} by
 * @property {number} pid
 * @property {"no-room" | "llm-resident" | "forced"} reason
 *   no-room: the card had less free than the need; llm-resident: the strict mode's rule;
 *   forced: FAKE_SD_OOM
 * @property {number | null} needMiB    what the double asked for (null in the strict mode)
 * @property {number | null} freeMiB    what the card had free then (null in the strict mode)
 * @property {string} what              the phase and the model: "UNet load, SD 1.x 512x512"
 */

/** @param {string} dir @param {Omit<OomRecord, "at">} oom */
export function recordOom(dir, oom) {
  fs.appendFileSync(path.join(dir, "oom.jsonl"), JSON.stringify({ at: Date.now(), ...oom }) + "\n");
}

/** @param {string} dir @returns {OomRecord[]} */
export function readOoms(dir) {
  return readJsonLines(path.join(dir, "oom.jsonl"));
}

/** @param {string} dir @param {number} pid @param {string[]} argv */
export function recordSpawn(dir, pid, argv) {
  fs.appendFileSync(path.join(dir, "spawns.jsonl"), JSON.stringify({ at: Date.now(), pid, argv }) + "\n");
}

/** @param {string} dir @returns {{at: number, pid: number, argv: string[]}[]} */
export function readSpawns(dir) {
  return readJsonLines(path.join(dir, "spawns.jsonl"));
}

// ---------------------------------------------------------------------------------------------
// the fake tools, bound to a directory
// ---------------------------------------------------------------------------------------------

/**
 * Writes <dir>/bin/nvidia-smi: a shell wrapper that runs tests/fakes/nvidia-smi.mjs on this
 * GPU directory (and with these FAKE_NVIDIA_SMI_* knobs). Point the product at it with
 * NVIDIA_SMI=<the returned path>. Calling it again rewrites the wrapper (new knobs).
 * @param {string} dir @param {{ env?: Record<string, string> }} [opts] @returns {string}
 */
export function installNvidiaSmi(dir, opts = {}) {
  return installTool(dir, "nvidia-smi", path.join(HERE, "nvidia-smi.mjs"), opts.env ?? {});
}

/** The same for rocm-smi (tests/fakes/rocm-smi.mjs). @param {string} dir @param {{ env?: Record<string, string> }} [opts] */
export function installRocmSmi(dir, opts = {}) {
  return installTool(dir, "rocm-smi", path.join(HERE, "rocm-smi.mjs"), opts.env ?? {});
}

/** @param {string} dir @param {string} name @param {string} script @param {Record<string, string>} env */
function installTool(dir, name, script, env) {
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin, { recursive: true });
  const q = (/** @type {string} */ s) => `'${s.replaceAll("'", `'\\''`)}'`;
  const assignments = Object.entries({ FAKE_GPU_DIR: dir, ...env })
    .map(([k, v]) => `${k}=${q(v)}`)
    .join(" ");
  const file = path.join(bin, name);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `#!/bin/sh\n${assignments} exec ${q(process.execPath)} ${q(script)} "$@"\n`, { mode: 0o755 });
  fs.renameSync(tmp, file);
  return file;
}

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/** @param {string} file @param {string} text */
function writeAtomically(file, text) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** @param {number} ms */
function sleepSync(ms) {
  Atomics.wait(sleeper, 0, 0, ms);
}

/**
 * Runs fn holding <dir>/claims.lock (created with O_EXCL; it holds the owner's pid). A lock
 * whose owner is dead, or held for more than 2 s, is broken.
 * @template T @param {string} dir @param {() => T} fn @returns {T}
 */
function withClaimsLock(dir, fn) {
  const lock = path.join(dir, LOCK);
  const started = Date.now();
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: "wx" });
      break;
    } catch (err) {
      if (/** @type {NodeJS.ErrnoException} */ (err).code !== "EEXIST") throw err;
      let owner = 0;
      try {
        owner = Number(fs.readFileSync(lock, "utf8"));
      } catch {
        continue; // released meanwhile
      }
      if ((Number.isInteger(owner) && owner > 0 && !isAlive(owner)) || Date.now() - started > 2_000) {
        fs.rmSync(lock, { force: true });
        continue;
      }
      sleepSync(1);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
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
