#!/usr/bin/env node
// @ts-check
/**
 * A test double for `nvidia-smi`, reading the simulated GPU of tests/fakes/fake-gpu.mjs (the
 * directory in FAKE_GPU_DIR; installNvidiaSmi(dir) writes a wrapper with it baked in, for
 * NVIDIA_SMI). One card, index 0: card.json gives memory.total; memory.used is the card's base
 * (driver and desktop) plus every live claim; memory.free = total - reserved - used. The compute
 * apps are the claims' pids (an sd double's own pid; the Ollama double's runner pid), one row
 * per pid with its claims added up, in claim order. No card (or no FAKE_GPU_DIR): no device.
 *
 * What it answers (REFERENCE.md §7), bytes as the real tool prints them:
 *
 *   --query-gpu=F1,F2,...  --format=csv[,noheader][,nounits]
 *       one line per GPU: the values in the order asked, joined by ", ", "\n" after each line;
 *       with a header line first unless `noheader` (`memory.total [MiB]`: the unit stays in the
 *       header even with `nounits`); values carry " MiB" unless `nounits`.
 *       Fields: index, count, name (gpu_name), uuid (gpu_uuid), driver_version,
 *       pci.bus_id (gpu_bus_id), memory.total, memory.used, memory.free, memory.reserved.
 *   --query-compute-apps=F1,...  --format=...
 *       one line per process holding memory; NOTHING at all (exit 0) when none (the header
 *       alone without `noheader`). Fields: pid, process_name (name), used_memory
 *       (used_gpu_memory; header `used_gpu_memory [MiB]`), gpu_uuid, gpu_name, gpu_bus_id,
 *       gpu_serial ([N/A] on a GeForce).
 *   -L / --list-gpus       `GPU 0: <name> (UUID: <uuid>)`
 *   -i 0 / --id=0          accepted (one GPU); another index: "No devices were found", exit 6
 *
 * Failures, as the real tool reports them (the message on stdout):
 *   no card                    `No devices were found`, exit 6
 *   an unknown field           `Field "x" is not a valid field to query.` + blank line, exit 2
 *   --query-* without --format, an unknown option, no option at all (the summary table is not
 *   simulated)                 `Invalid combination of input arguments. Please run 'nvidia-smi -h'
 *                              for help.`, exit 2 (the message is not verified against a real run)
 *
 * Knobs (environment variables):
 *   FAKE_GPU_DIR=dir                   the simulated GPU
 *   FAKE_NVIDIA_SMI_FAIL=driver        `NVIDIA-SMI has failed because it couldn't communicate with
 *                                      the NVIDIA driver. ...`, exit 9
 *   FAKE_NVIDIA_SMI_FAIL=mismatch      `Failed to initialize NVML: Driver/library version mismatch`,
 *                                      exit 18
 *   FAKE_NVIDIA_SMI_FAIL=no-devices    `No devices were found`, exit 6 (even with a card)
 *   FAKE_NVIDIA_SMI_PROCESS_MEMORY=na  used_memory is `[N/A]` (Windows WDDM, some containers)
 *   FAKE_NVIDIA_SMI_DELAY_MS=n         answer after n ms
 *   FAKE_NVIDIA_SMI_HANG=1             never answer (for timeouts)
 *   FAKE_NVIDIA_SMI_LOG=file           append {"at": ms, "argv": [...]} per call (to count samples)
 */
import fs from "node:fs";
import { ledger } from "./fake-gpu.mjs";

const env = process.env;
const argv = process.argv.slice(2);

const INVALID = "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n";
const NO_DEVICES = "No devices were found\n";

/** @param {string} text @param {number} code @returns {never} */
function finish(text, code) {
  if (text !== "") fs.writeSync(1, text);
  process.exit(code);
}

/** @typedef {import("./fake-gpu.mjs").Card} Card */
/** @typedef {ReturnType<typeof ledger>} Ledger */
/** @typedef {{ pid: number, usedMiB: number, processName: string }} Row */

/**
 * GPU fields: canonical name (used in the header), unit, value.
 * @type {Record<string, { header: string, unit: string, value: (card: Card, l: Ledger) => string }>}
 */
const GPU_FIELDS = {
  index: { header: "index", unit: "", value: () => "0" },
  count: { header: "count", unit: "", value: () => "1" },
  name: { header: "name", unit: "", value: (c) => c.name },
  uuid: { header: "uuid", unit: "", value: (c) => c.uuid },
  driver_version: { header: "driver_version", unit: "", value: (c) => c.driverVersion },
  "pci.bus_id": { header: "pci.bus_id", unit: "", value: () => "00000000:01:00.0" },
  "memory.total": { header: "memory.total", unit: "MiB", value: (c) => String(c.totalMiB) },
  "memory.used": { header: "memory.used", unit: "MiB", value: (_c, l) => String(l.usedMiB) },
  "memory.free": { header: "memory.free", unit: "MiB", value: (_c, l) => String(l.freeMiB) },
  "memory.reserved": { header: "memory.reserved", unit: "MiB", value: (c) => String(c.reservedMiB) },
};
/** @type {Record<string, string>} */
const GPU_ALIASES = { gpu_name: "name", gpu_uuid: "uuid", gpu_bus_id: "pci.bus_id" };

const naMemory = env.FAKE_NVIDIA_SMI_PROCESS_MEMORY === "na";
/** @type {Record<string, { header: string, unit: string, value: (row: Row, card: Card) => string }>} */
const APP_FIELDS = {
  pid: { header: "pid", unit: "", value: (r) => String(r.pid) },
  process_name: { header: "process_name", unit: "", value: (r) => r.processName },
  used_memory: { header: "used_gpu_memory", unit: "MiB", value: (r) => (naMemory ? "[N/A]" : String(r.usedMiB)) },
  gpu_uuid: { header: "gpu_uuid", unit: "", value: (_r, c) => c.uuid },
  gpu_name: { header: "gpu_name", unit: "", value: (_r, c) => c.name },
  gpu_bus_id: { header: "gpu_bus_id", unit: "", value: () => "00000000:01:00.0" },
  gpu_serial: { header: "gpu_serial", unit: "", value: () => "[N/A]" },
};
/** @type {Record<string, string>} */
const APP_ALIASES = { name: "process_name", used_gpu_memory: "used_memory" };

/**
 * @typedef {object} Parsed
 * @property {"gpu" | "apps" | "list" | "help" | null} what
 * @property {string[]} fields
 * @property {string[] | null} format
 * @property {string | null} id
 */

/** @returns {Parsed | null} null: an invalid command line */
function parse() {
  /** @type {Parsed} */
  const p = { what: null, fields: [], format: null, id: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = /** @type {string} */ (argv[i]);
    const eq = arg.indexOf("=");
    const name = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
    const inline = arg.startsWith("--") && eq > 0 ? arg.slice(eq + 1) : undefined;
    const value = () => inline ?? argv[++i];
    switch (name) {
      case "--query-gpu":
      case "--query-compute-apps": {
        if (p.what !== null) return null;
        const v = value();
        if (v === undefined) return null;
        p.what = name === "--query-gpu" ? "gpu" : "apps";
        p.fields = v.split(",").map((f) => f.trim());
        break;
      }
      case "--format": {
        const v = value();
        if (v === undefined) return null;
        p.format = v.split(",").map((f) => f.trim());
        break;
      }
      case "-i":
      case "--id": {
        const v = value();
        if (v === undefined) return null;
        p.id = v;
        break;
      }
      case "-L":
      case "--list-gpus":
        if (p.what !== null) return null;
        p.what = "list";
        break;
      case "-h":
      case "--help":
        p.what = "help";
        break;
      default:
        return null;
    }
  }
  return p;
}

async function main() {
  if (env.FAKE_NVIDIA_SMI_LOG) {
    try {
      fs.appendFileSync(env.FAKE_NVIDIA_SMI_LOG, `${JSON.stringify({ at: Date.now(), argv })}\n`);
    } catch {
      // the test may have removed the folder
    }
  }
  if (env.FAKE_NVIDIA_SMI_HANG === "1") {
    setInterval(() => {}, 1 << 30);
    return;
  }
  const delay = Number(env.FAKE_NVIDIA_SMI_DELAY_MS ?? "");
  if (Number.isFinite(delay) && delay > 0) await new Promise((r) => setTimeout(r, delay));

  const fail = env.FAKE_NVIDIA_SMI_FAIL;
  if (fail === "driver") {
    finish(
      "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n\n",
      9,
    );
  }
  if (fail === "mismatch") finish("Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 550.120\n", 18);

  const p = parse();
  if (p === null || p.what === null) finish(INVALID, 2);
  if (p.what === "help") finish("NVIDIA System Management Interface -- v550.54.14 (fake: tests/fakes/nvidia-smi.mjs)\n", 0);

  const dir = env.FAKE_GPU_DIR;
  const l = dir ? ledger(dir) : undefined;
  const card = l?.card;
  if (fail === "no-devices" || !l || !card || (p.id !== null && p.id !== "0")) finish(NO_DEVICES, 6);

  if (p.what === "list") finish(`GPU 0: ${card.name} (UUID: ${card.uuid})\n`, 0);

  if (p.format === null || !p.format.includes("csv") || p.format.some((f) => !["csv", "noheader", "nounits"].includes(f))) finish(INVALID, 2);
  const header = !p.format.includes("noheader");
  const units = !p.format.includes("nounits");

  const table = p.what === "gpu" ? GPU_FIELDS : APP_FIELDS;
  const aliases = p.what === "gpu" ? GPU_ALIASES : APP_ALIASES;
  const columns = [];
  for (const asked of p.fields) {
    const column = table[aliases[asked] ?? asked];
    if (!column) finish(`Field "${asked}" is not a valid field to query.\n\n`, 2);
    columns.push(column);
  }
  /** @param {string} v @param {string} unit */
  const withUnit = (v, unit) => (units && unit !== "" && !v.startsWith("[") ? `${v} ${unit}` : v);
  let out = header ? `${columns.map((c) => (c.unit ? `${c.header} [${c.unit}]` : c.header)).join(", ")}\n` : "";
  if (p.what === "gpu") {
    out += `${columns.map((c) => withUnit(/** @type {typeof GPU_FIELDS[string]} */ (c).value(card, l), c.unit)).join(", ")}\n`;
  } else {
    for (const row of l.processes) {
      out += `${columns.map((c) => withUnit(/** @type {typeof APP_FIELDS[string]} */ (c).value(row, card), c.unit)).join(", ")}\n`;
    }
  }
  finish(out, 0);
}

void main();
