import { randomBytes } from "node:crypto";
import path from "node:path";

/**
 * `OUTPUT_DIR/<timestamp>-<tag>.png`: sortable by time, unique across concurrent jobs and
 * server restarts, and free of anything the client sent. The tag is the job's (see
 * outputTagFor), so a job's files can be found again after a crash; random without one.
 */
export function newOutputPath(outputDir: string, now: Date = new Date(), tag?: string): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(".", "");
  return path.join(path.resolve(outputDir), `${stamp}-${tag ?? randomBytes(4).toString("hex")}.png`);
}

/** The tag of a job's output files: the id's last 16 letters and digits (job ids are UUIDs). */
export function outputTagFor(jobId: string): string | undefined {
  const tag = jobId.replace(/[^A-Za-z0-9]/g, "").slice(-16).toLowerCase();
  return tag.length >= 8 ? tag : undefined;
}

/** Our output names: `<timestamp>-<tag>.png`, `..._<i>.png` in a batch, `.preview.png`. */
const outputName = /^\d{8}T\d{9}Z-([0-9a-z]+)(?:_\d+)?(?:\.preview)?\.png$/;

/** The tag in one of our output file names (undefined for any other file). */
export function outputTagOf(fileName: string): string | undefined {
  return outputName.exec(fileName)?.[1];
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
