/**
 * `npm run bench`: every benchmark under bench/, one after the other (they share two
 * cores, so never at once), with the figures written to bench/results/latest.json along
 * with the machine and Node version that produced them. Each bench prints its own table.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as overhead from "./overhead.js";
import * as progressLatency from "./progress-latency.js";
import * as swaps from "./swaps.js";

const results: Record<string, unknown> = {};
process.stdout.write("== progress-latency\n");
progressLatency.printTable((results["progress-latency"] = await progressLatency.run()));
process.stdout.write("\n== swaps\n");
swaps.printTable((results.swaps = await swaps.run()));
process.stdout.write("\n== overhead\n");
overhead.printTable((results.overhead = await overhead.run()));

const machine = {
  node: process.version,
  platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  cpus: `${os.cpus().length} × ${os.cpus()[0]?.model ?? "unknown"}`,
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  at: new Date().toISOString(),
};
const file = path.join(path.dirname(fileURLToPath(import.meta.url)), "results", "latest.json");
fs.writeFileSync(file, JSON.stringify({ machine, results }, null, 2) + "\n");
process.stdout.write(`\nran on ${machine.cpus}, ${machine.memoryGiB} GiB, Node ${machine.node}; figures in ${path.relative(process.cwd(), file)}\n`);
