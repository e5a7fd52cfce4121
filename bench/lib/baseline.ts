/**
 * Another commit of this app, to run beside the current one in the same bench run: its
 * files unpacked (`git archive`, read-only for the repository) into a temp folder with
 * this checkout's node_modules linked in; lib/server-process.ts builds and starts it.
 * The doubles and the bench are always this checkout's, so both run against the same ones.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { repoRoot } from "../../tests/helpers/stack.js";

/** The folder holding `commit`'s app (unpacked once per commit and kept for the next run). */
export function unpackCommit(commit: string): string {
  const full = execFileSync("git", ["rev-parse", "--verify", `${commit}^{commit}`], { cwd: repoRoot, encoding: "utf8" }).trim();
  const dir = path.join(os.tmpdir(), `diffugen-baseline-${full.slice(0, 12)}`);
  if (!fs.existsSync(path.join(dir, "package.json"))) {
    fs.mkdirSync(dir, { recursive: true });
    const tar = execFileSync("git", ["archive", "--format=tar", full, "bin", "src", "graphs", "package.json", "tsconfig.json", "tsconfig.build.json"], {
      cwd: repoRoot,
      maxBuffer: 256 * 1024 * 1024,
    });
    execFileSync("tar", ["-x", "-C", dir], { input: tar });
  }
  const modules = path.join(dir, "node_modules");
  if (!fs.existsSync(modules)) fs.symlinkSync(fs.realpathSync(path.join(repoRoot, "node_modules")), modules);
  return dir;
}
