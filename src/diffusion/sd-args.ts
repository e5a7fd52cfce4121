import type { ModelFile } from "../models/index.js";
import { InvalidGenerationParamsError } from "./errors.js";
import type { GenerationParams } from "./generation-request.js";
import { loraNameProblem } from "./lora-tags.js";
import type { PreviewMode } from "./sampling-options.js";

export interface SdArgsOptions {
  /** Absolute path of the image (with `-b N`, sd-cli writes NAME_0.png ... instead). */
  outputPath: string;
  /** Where sd-cli rewrites its preview PNG every step; no preview when absent. */
  previewPath?: string | undefined;
  previewMode?: PreviewMode | undefined;
  threads?: number | undefined;
  /** SD_EXTRA_ARGS, already split into words; appended last so they can add memory flags. */
  extraArgs?: readonly string[] | undefined;
  /** Passed only when the prompt names a LoRA. */
  loraDir?: string | undefined;
}

/**
 * The sd-cli argv (without the binary) for one generation. It is handed to the process
 * as an array, never through a shell, so prompt text cannot become a command.
 */
export function buildSdArgs(
  params: GenerationParams,
  files: readonly ModelFile[],
  options: SdArgsOptions,
): string[] {
  const args: string[] = [];
  for (const file of files) args.push(file.flag, file.path);

  args.push("-p", params.prompt);
  if (params.negativePrompt !== "") args.push("-n", params.negativePrompt);
  args.push("-W", num("width", params.width), "-H", num("height", params.height));
  args.push("--steps", num("steps", params.steps));
  args.push("--cfg-scale", num("cfgScale", params.cfgScale));
  if (params.guidance !== undefined) args.push("--guidance", num("guidance", params.guidance));
  args.push("--sampling-method", params.samplingMethod);
  if (params.scheduler !== undefined) args.push("--scheduler", params.scheduler);
  // Always pass the seed: sd-cli's own default is a fixed 42, and we report what we used.
  args.push("-s", num("seed", params.seed));
  // With -b 1 sd-cli writes plain NAME.png; only a real batch renames the outputs.
  if (params.batchCount > 1) args.push("-b", num("batchCount", params.batchCount));
  if (options.threads !== undefined) args.push("-t", num("threads", options.threads));
  if (params.initImage !== undefined) {
    args.push("-i", params.initImage, "--strength", num("strength", params.strength ?? 0.75));
  }
  if (params.vaeTiling) args.push("--vae-tiling");
  if (params.clipSkip !== undefined) args.push("--clip-skip", num("clipSkip", params.clipSkip));

  if (params.loras.length > 0) {
    for (const lora of params.loras) {
      const problem = loraNameProblem(lora.name);
      if (problem) throw new InvalidGenerationParamsError("prompt", `invalid prompt: LoRA tag ${lora.tag}: ${problem}`);
    }
    if (!options.loraDir) {
      throw new InvalidGenerationParamsError(
        "prompt",
        "the prompt names a LoRA but no LoRA directory is configured (SD_LORA_DIR)",
      );
    }
    args.push("--lora-model-dir", options.loraDir);
  }

  args.push("-o", options.outputPath);
  if (options.previewPath !== undefined) {
    args.push("--preview", options.previewMode ?? "proj", "--preview-path", options.previewPath);
  }
  // --color wraps the log tags in ANSI codes: the output parser reads plain tags.
  for (const arg of options.extraArgs ?? []) if (arg !== "--color") args.push(arg);
  return args;
}

/** Numbers go out with String(); a NaN or Infinity here would abort sd-cli (stoi/stof). */
function num(param: string, value: number): string {
  if (!Number.isFinite(value)) {
    throw new InvalidGenerationParamsError(param, `${param} must be a finite number (got ${String(value)})`);
  }
  return String(value);
}
