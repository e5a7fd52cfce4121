import { randomBytes } from "node:crypto";
import path from "node:path";

/**
 * `OUTPUT_DIR/<timestamp>-<random>.png`: sortable by time, unique across concurrent
 * jobs and server restarts, and free of anything the client sent.
 */
export function newOutputPath(outputDir: string, now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(".", "");
  return path.join(path.resolve(outputDir), `${stamp}-${randomBytes(4).toString("hex")}.png`);
}

/** The preview file that goes with an output: same stem, removed when the run ends. */
export function previewPathFor(outputPath: string): string {
  const { dir, name } = path.parse(outputPath);
  return path.join(dir, `${name}.preview.png`);
}

/**
 * The files sd-cli writes for `-o outputPath -b count`: the path itself for one image,
 * NAME_0.png ... NAME_{count-1}.png for a batch (observed on master-827).
 */
export function batchOutputPaths(outputPath: string, count: number): string[] {
  if (count <= 1) return [outputPath];
  const { dir, name, ext } = path.parse(outputPath);
  return Array.from({ length: count }, (_, i) => path.join(dir, `${name}_${i}${ext}`));
}
