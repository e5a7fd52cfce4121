import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig, type Config } from "../../../src/config/index.js";
import { ModelRegistry } from "../../../src/models/index.js";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
/** The sd-cli test double (an executable node script). */
export const fakeSdCli = path.join(repoRoot, "tests/fakes/sd-cli.mjs");

export interface Sandbox {
  dir: string;
  modelsDir: string;
  outputDir: string;
  gpuDir: string;
  config: Config;
  registry: ModelRegistry;
  cleanup(): void;
}

/**
 * A temp MODELS_DIR holding an empty file for every built-in model (the double checks that
 * they exist, not what they contain), an OUTPUT_DIR, a simulated GPU dir, and the config
 * and registry pointing at them with SD_CPP_BIN = the double.
 */
export function makeSandbox(env: Record<string, string> = {}): Sandbox {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-sd-"));
  const modelsDir = path.join(dir, "models");
  const outputDir = path.join(dir, "outputs");
  const gpuDir = path.join(dir, "gpu");
  fs.mkdirSync(modelsDir);
  fs.mkdirSync(gpuDir);
  const config = loadConfig({
    SD_CPP_BIN: fakeSdCli,
    MODELS_DIR: modelsDir,
    OUTPUT_DIR: outputDir,
    DEFAULT_IMAGE_MODEL: "sd15",
    ...env,
  });
  const registry = new ModelRegistry({ modelsDir, defaultModel: "sd15" });
  for (const entry of registry.list()) {
    for (const file of registry.files(entry)) fs.writeFileSync(file.path, "");
  }
  return {
    dir,
    modelsDir,
    outputDir,
    gpuDir,
    config,
    registry,
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Every file under a directory (relative paths), to prove nothing was left behind. */
export function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => fs.statSync(path.join(dir, f)).isFile());
}
