import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/**
 * How tests run `diffugen`: `node --import <tsx> src/cli/main.ts ...`, one process (no tsx
 * wrapper in between, so a signal sent to its pid reaches the CLI itself) and no lookup of
 * node or tsx on PATH (tests may empty PATH).
 */

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const main = path.join(root, "src/cli/main.ts");
/** tsx's loader by absolute URL: `--import tsx` would be looked up from the temp cwd. */
const tsxLoader = pathToFileURL(createRequire(path.join(root, "package.json")).resolve("tsx")).href;

export function diffugenCommand(...args: string[]): { file: string; args: string[] } {
  return { file: process.execPath, args: ["--import", tsxLoader, main, ...args] };
}
