import { existsSync, readFileSync, realpathSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The command that runs `diffugen` from where the user is, for the hints the CLI prints
 * ("Next: <cli> models pull sd15"):
 *
 * - `diffugen` when this process was started through a `diffugen` bin on PATH (`npm link`,
 *   `npm install -g .`);
 * - else `npx diffugen` when the working directory is inside this checkout (npx finds the
 *   package's own bin there; elsewhere it would fetch a registry package of that name);
 * - else `node <checkout>/bin/diffugen.js`, which works from anywhere.
 */

export interface CliCommandContext {
  /** process.argv[1]: the script node was started with. */
  argv1?: string | undefined;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** The package's folder (the checkout). */
  root?: string;
}

let root: string | undefined;

/** The folder of DiffuGen's package.json, found upward from this file (src/cli or dist/src/cli). */
export function packageRoot(): string {
  if (root !== undefined) return root;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = path.join(dir, "package.json");
    if (existsSync(file)) {
      try {
        if ((JSON.parse(readFileSync(file, "utf8")) as { name?: string }).name === "diffugen") return (root = dir);
      } catch {
        // not ours; keep looking
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return (root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../.."));
    dir = parent;
  }
}

export function cliCommand(context: CliCommandContext = {}): string {
  const argv1 = "argv1" in context ? context.argv1 : process.argv[1];
  const env = context.env ?? process.env;
  const cwd = context.cwd ?? process.cwd();
  const pkg = context.root ?? packageRoot();
  if (startedFromPath(argv1, env)) return "diffugen";
  if (inside(real(cwd), real(pkg))) return "npx diffugen";
  const launcher = path.join(pkg, "bin", "diffugen.js");
  return `node ${/\s/.test(launcher) ? JSON.stringify(launcher) : launcher}`;
}

/** argv[1] is a `diffugen` in a PATH folder that is not some package's node_modules/.bin. */
function startedFromPath(argv1: string | undefined, env: NodeJS.ProcessEnv): boolean {
  if (!argv1) return false;
  const name = path.basename(argv1).replace(/\.(cmd|ps1|exe)$/i, "");
  if (name !== "diffugen") return false;
  const dir = path.dirname(path.resolve(argv1));
  if (/[\\/]node_modules[\\/]\.bin$/.test(dir)) return false;
  const entries = (env.PATH ?? env.Path ?? "").split(path.delimiter).filter((p) => p !== "");
  return entries.some((entry) => path.resolve(entry) === dir);
}

function real(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}
