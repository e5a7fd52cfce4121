import fs from "node:fs";
import path from "node:path";
import { outputTagOf } from "../diffusion/index.js";

/**
 * Housekeeping of OUTPUT_DIR for a box left running: old images go by age and count
 * (OUTPUT_MAX_AGE_DAYS, OUTPUT_MAX_COUNT), and the files of a job that died with the
 * process go at the next start. Only files DiffuGen named itself are ever touched
 * (`<timestamp>-<tag>.png`): whatever else a user keeps in the folder is theirs.
 */

export interface RetentionLimits {
  /** 0 = no age limit. */
  maxAgeMs: number;
  /** 0 = no count limit. */
  maxCount: number;
}

interface OutputFile {
  file: string;
  tag: string;
  mtimeMs: number;
}

function ourFiles(outputDir: string): OutputFile[] {
  let names: string[];
  try {
    names = fs.readdirSync(outputDir);
  } catch {
    return [];
  }
  const files: OutputFile[] = [];
  for (const name of names) {
    const tag = outputTagOf(name);
    if (tag === undefined) continue;
    const file = path.join(outputDir, name);
    try {
      const stat = fs.statSync(file);
      if (stat.isFile()) files.push({ file, tag, mtimeMs: stat.mtimeMs });
    } catch {
      // Gone meanwhile: nothing to prune.
    }
  }
  return files;
}

function remove(file: string): boolean {
  try {
    fs.unlinkSync(file);
    return true;
  } catch {
    return false;
  }
}

/** Deletes every file of one job (its images, a partial batch, a preview). Returns how many. */
export function removeJobFiles(outputDir: string, tag: string): number {
  return ourFiles(outputDir).filter((f) => f.tag === tag && remove(f.file)).length;
}

/**
 * Deletes images older than maxAgeMs and all but the newest maxCount, never a file of a
 * job still running (`protectedTags`). Returns how many files went.
 */
export function pruneOutputs(
  outputDir: string,
  limits: RetentionLimits,
  protectedTags: ReadonlySet<string> = new Set(),
  now = Date.now(),
): number {
  if (limits.maxAgeMs <= 0 && limits.maxCount <= 0) return 0;
  const images = ourFiles(outputDir)
    .filter((f) => !protectedTags.has(f.tag))
    .sort((a, b) => b.mtimeMs - a.mtimeMs);
  let removed = 0;
  images.forEach((image, rank) => {
    const tooOld = limits.maxAgeMs > 0 && now - image.mtimeMs > limits.maxAgeMs;
    const beyondCount = limits.maxCount > 0 && rank >= limits.maxCount;
    if ((tooOld || beyondCount) && remove(image.file)) removed++;
  });
  return removed;
}
