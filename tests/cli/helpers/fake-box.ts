import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isAlive, readSpawns } from "../../fakes/fake-gpu.mjs";
import { startFakeOllama, type FakeOllama } from "../../fakes/ollama-server.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

/**
 * A whole GPU box in a temp folder, for tests that run DiffuGen as its own process: a
 * fake Ollama holding the LLM, the sd-cli double, sd15's weights file, and the folders
 * DiffuGen writes to. `env` is what a user would set to point DiffuGen at it.
 */
export interface FakeBox {
  dir: string;
  gpuDir: string;
  outputDir: string;
  ollama: FakeOllama;
  env(extra?: Record<string, string>): Record<string, string>;
  /** Ends every sd-cli the box saw (by pid), the fake Ollama, and removes the folder. */
  close(): Promise<void>;
}

export async function startFakeBox(prefix: string): Promise<FakeBox> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `diffugen-${prefix}-`));
  const gpuDir = path.join(dir, "gpu");
  const outputDir = path.join(dir, "outputs");
  fs.mkdirSync(path.join(dir, "models"), { recursive: true });
  fs.mkdirSync(gpuDir);
  fs.writeFileSync(path.join(dir, "models", "v1-5-pruned-emaonly.safetensors"), "");
  const ollama = await startFakeOllama({ installed: ["qwen2.5:3b"], resident: ["qwen2.5:3b"], gpuDir });
  return {
    dir,
    gpuDir,
    outputDir,
    ollama,
    env: (extra = {}) => ({
      SD_CPP_BIN: path.join(root, "tests/fakes/sd-cli.mjs"),
      MODELS_DIR: path.join(dir, "models"),
      OUTPUT_DIR: outputDir,
      DATA_DIR: path.join(dir, "data"),
      OLLAMA_BASE_URL: ollama.url,
      FAKE_GPU_DIR: gpuDir,
      ...extra,
    }),
    async close() {
      // Whatever a failed test left running ends here, by pid.
      for (const spawn of readSpawns(gpuDir)) if (isAlive(spawn.pid)) process.kill(spawn.pid, "SIGKILL");
      await ollama.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
