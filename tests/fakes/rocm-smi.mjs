#!/usr/bin/env node
// @ts-check
/**
 * A test double for AMD's `rocm-smi` (the Python CLI of rocm_smi_lib), reading the simulated GPU
 * of tests/fakes/fake-gpu.mjs (FAKE_GPU_DIR; installRocmSmi(dir) writes a wrapper with it baked
 * in). One card, card0. Only `--showmeminfo` is simulated:
 *
 *   rocm-smi --showmeminfo vram --json
 *     {"card0": {"VRAM Total Memory (B)": "8585740288", "VRAM Total Used Memory (B)": "314572800"}}
 *     one line, Python's json.dumps separators (", " and ": "), every value a string of bytes,
 *     exit 0. Total = the card's totalMiB; used = its base plus every live claim (rocm-smi
 *     has no "reserved"). `vis_vram` answers the same figures (a resizable BAR), `gtt` a 16 GiB
 *     pool with 16 MiB used; `all` lists the three, in the order VRAM, VIS_VRAM, GTT.
 *   without --json: the text log (`GPU[0]\t\t: VRAM Total Memory (B): N` between `=` spacers
 *     100 characters wide).
 *   -d 0 / --device 0: accepted; another device: `No such device cardN` on stderr, exit 0.
 *
 * rocm-smi lists no memory per process in this query: a product on AMD sees only the total.
 * No card: `ERROR: No DRM devices available. Exiting`, exit 1 (approximate: the real message
 * depends on why no device is found). Anything else on the command line: argparse's usage error,
 * exit 2.
 *
 * Knobs: FAKE_GPU_DIR=dir, FAKE_ROCM_SMI_DELAY_MS=n, FAKE_ROCM_SMI_LOG=file (one JSON line per call).
 */
import fs from "node:fs";
import { ledger } from "./fake-gpu.mjs";

const env = process.env;
const argv = process.argv.slice(2);
const MIB = 1024 * 1024;
const APP_WIDTH = 100;

/** @param {1 | 2} fd @param {string} text @param {number} code @returns {never} */
function finish(fd, text, code) {
  if (text !== "") fs.writeSync(fd, text);
  process.exit(code);
}

/** @param {string} message @returns {never} */
function usageError(message) {
  finish(2, `usage: rocm-smi [-h] [-V] [-d DEVICE [DEVICE ...]] [--showmeminfo TYPE [TYPE ...]] [--json] ...\nrocm-smi: error: ${message}\n`, 2);
}

async function main() {
  if (env.FAKE_ROCM_SMI_LOG) {
    try {
      fs.appendFileSync(env.FAKE_ROCM_SMI_LOG, `${JSON.stringify({ at: Date.now(), argv })}\n`);
    } catch {
      // the test may have removed the folder
    }
  }
  const delay = Number(env.FAKE_ROCM_SMI_DELAY_MS ?? "");
  if (Number.isFinite(delay) && delay > 0) await new Promise((r) => setTimeout(r, delay));

  let json = false;
  /** @type {string[] | null} */
  let types = null;
  /** @type {string[]} */
  const devices = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = /** @type {string} */ (argv[i]);
    if (arg === "--json") json = true;
    else if (arg === "--showmeminfo") {
      types = [];
      while (i + 1 < argv.length && !(/** @type {string} */ (argv[i + 1]).startsWith("-"))) types.push(/** @type {string} */ (argv[++i]));
      if (types.length === 0) usageError("argument --showmeminfo: expected at least one argument");
      for (const t of types) {
        if (!["vram", "vis_vram", "gtt", "all"].includes(t)) usageError(`argument --showmeminfo: invalid choice: '${t}' (choose from 'all', 'gtt', 'vis_vram', 'vram')`);
      }
    } else if (arg === "-d" || arg === "--device") {
      while (i + 1 < argv.length && /^\d+$/.test(/** @type {string} */ (argv[i + 1]))) devices.push(/** @type {string} */ (argv[++i]));
      if (devices.length === 0) usageError(`argument -d/--device: expected at least one argument`);
    } else usageError(`unrecognized arguments: ${arg}`);
  }
  if (types === null) usageError("only --showmeminfo is simulated by this double");

  const l = env.FAKE_GPU_DIR ? ledger(env.FAKE_GPU_DIR) : undefined;
  const card = l?.card;
  if (!l || !card) finish(1, "ERROR: No DRM devices available. Exiting\n", 1);
  const other = devices.find((d) => d !== "0");
  if (other !== undefined) finish(2, `WARNING: No such device card${other}\n`, 0);

  const wanted = types.includes("all") ? ["VRAM", "VIS_VRAM", "GTT"] : types.map((t) => t.toUpperCase());
  /** @type {[string, string][]} */
  const pairs = [];
  for (const mem of wanted) {
    const [total, used] = mem === "GTT" ? [16384 * MIB, 16 * MIB] : [card.totalMiB * MIB, l.usedMiB * MIB];
    pairs.push([`${mem} Total Memory (B)`, String(total)], [`${mem} Total Used Memory (B)`, String(used)]);
  }
  if (json) {
    const body = pairs.map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(", ");
    finish(1, `{"card0": {${body}}}\n`, 0);
  }
  /** printLogSpacer: the string centred in `=`, padded to an even length. @param {string} [s] */
  const spacer = (s) => {
    if (!s) return "=".repeat(APP_WIDTH);
    const even = s.length % 2 ? `${s}=` : s;
    const side = "=".repeat(Math.trunc((APP_WIDTH - even.length) / 2));
    return side + even + side;
  };
  const lines = ["\n", spacer(" ROCm System Management Interface "), spacer(" Memory Usage (Bytes) ")];
  for (const [k, v] of pairs) lines.push(`GPU[0]\t\t: ${k}: ${v}`);
  lines.push(spacer(), spacer(" End of ROCm SMI Log "));
  finish(1, `${lines.join("\n")}\n`, 0);
}

void main();
