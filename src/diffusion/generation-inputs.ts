import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { InvalidGenerationParamsError } from "./errors.js";
import type { GenerationParams } from "./generation-request.js";
import { loraFileExtensions } from "./lora-tags.js";

/**
 * What a generation reads from disk besides the weights, checked before anything is
 * spawned or sent, whichever backend draws: the init image and the LoRA files can change
 * after admission. Returns each LoRA's file relative to `loraDir` (the name sd-server's
 * `/sdapi/v1/loras` lists it by; sd-cli finds it from the tag itself).
 */
export function checkGenerationInputs(params: GenerationParams, loraDir: string | undefined): Map<string, string> {
  if (params.initImage !== undefined && !isFile(params.initImage)) {
    throw new InvalidGenerationParamsError("initImage", `init image not found: ${params.initImage}`);
  }
  const loraFiles = new Map<string, string>();
  if (params.loras.length > 0 && loraDir) {
    for (const lora of params.loras) {
      const ext = loraFileExtensions.find((e) => isFile(path.join(loraDir, lora.name + e)));
      if (ext === undefined) throw new InvalidGenerationParamsError("prompt", `LoRA '${lora.name}' not found in ${loraDir}`);
      loraFiles.set(lora.name, lora.name + ext);
    }
  }
  return loraFiles;
}

export function isFile(file: string): boolean {
  try {
    return existsSync(file) && statSync(file).isFile();
  } catch {
    return false;
  }
}
