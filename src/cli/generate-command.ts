import fs from "node:fs";
import path from "node:path";
import { Option, type Command } from "commander";
import { graph } from "../../graphs/diffugen.js";
import { createRunContext } from "../../graphs/diffugen/run-context.js";
import type { DiffugenStateValue } from "../../graphs/diffugen/state.js";
import { bootstrap } from "../bootstrap/index.js";
import type { Config } from "../config/index.js";
import { parseGenerationRequest, type GenerationRequest } from "../diffusion/index.js";
import type { ProgressEvent } from "../events/progress-event.js";
import { JobRejectedError, type JobInput } from "../jobs/index.js";
import { fileLogDestination, logFilePath, type DestinationStream } from "../logging/index.js";
import { createProgressDisplay, type ProgressDisplay } from "./progress-display.js";
import { interruptSignal } from "./interrupt.js";

/**
 * Every generation flag, once: commander's option, its help, and the request field it
 * fills (src/diffusion/generation-request.ts checks the value and names that field).
 */
const generationFlags: readonly { flags: string; help: string; field: keyof GenerationRequest }[] = [
  { flags: "-m, --model <name>", help: "image model (registry name or alias)", field: "model" },
  { flags: "--steps <n>", help: "sampling steps", field: "steps" },
  { flags: "-W, --width <px>", help: "width, a multiple of 64", field: "width" },
  { flags: "-H, --height <px>", help: "height, a multiple of 64", field: "height" },
  { flags: "--cfg-scale <x>", help: "classifier-free guidance scale", field: "cfgScale" },
  { flags: "--guidance <x>", help: "distilled guidance (Flux)", field: "guidance" },
  { flags: "-s, --seed <n>", help: "seed (-1 for random)", field: "seed" },
  { flags: "--sampler <name>", help: "sampling method (euler, euler_a, dpm++2m, ...)", field: "samplingMethod" },
  { flags: "--scheduler <name>", help: "scheduler (discrete, karras, ...)", field: "scheduler" },
  { flags: "-n, --negative <text>", help: "negative prompt", field: "negativePrompt" },
  { flags: "-b, --batch <n>", help: "number of images", field: "batchCount" },
  { flags: "-i, --init-image <file>", help: "img2img: start from this image", field: "initImage" },
  { flags: "--strength <x>", help: "img2img strength, 0-1", field: "strength" },
  { flags: "--vae-tiling", help: "decode in tiles (less VRAM)", field: "vaeTiling" },
  { flags: "--clip-skip <n>", help: "CLIP layers to skip (1 = none; default: by model family)", field: "clipSkip" },
];

const generationOptions = generationFlags.map((flag) => ({ option: new Option(flag.flags, flag.help), field: flag.field }));

interface GenerateOptions extends Record<string, unknown> {
  refine: boolean;
  out?: string;
  verbose?: boolean;
}

export function registerGenerateCommand(program: Command, loadConfig: () => Config): void {
  const command = program
    .command("generate")
    .description("draw one picture: refine the prompt with the LLM, unload it, run sd.cpp, reload it")
    .argument("<prompt>", "what to draw (LoRA tags like <lora:name:0.8> and (emphasis:1.2) are kept)");
  for (const { option } of generationOptions) command.addOption(option);
  command
    .option("--no-refine", "use the prompt as written, without the LLM")
    .option("-o, --out <file>", "where to save the image (a batch gets _0, _1, ...)")
    .option("-v, --verbose", "write the JSON log to stderr, above the bars (default: DATA_DIR/logs/diffugen.log; LOG_FORMAT=json does the same)")
    .action(async (prompt: string, options: GenerateOptions) => {
      process.exitCode = await generate(prompt, options, loadConfig());
    });
}

async function generate(prompt: string, options: GenerateOptions, config: Config): Promise<number> {
  // A bad flag is refused before the GPU is taken (admission below says it again, for the server's rules).
  try {
    parseGenerationRequest(requestFrom(prompt, options));
  } catch (err) {
    process.stderr.write(`diffugen: ${(err as Error).message}\n`);
    return 2;
  }
  const display = createProgressDisplay();
  const app = bootstrap(config, "generate", { logDestination: logDestination(config, options, display) });
  // The server's admission, before anything costly: a job that cannot run (no sd-cli, a
  // missing model) is refused before the LLM is asked or unloaded.
  let input: JobInput;
  try {
    input = app.runner.prepare({ mode: "image", request: requestFrom(prompt, options), refinePrompt: options.refine });
  } catch (err) {
    await app.close();
    if (!(err instanceof JobRejectedError)) throw err;
    process.stderr.write(`diffugen: ${err.message}\n`);
    return exitCodeFor(err.error.code);
  }
  const interrupt = interruptSignal();

  let state: DiffugenStateValue | undefined;
  try {
    const context = createRunContext(app.deps, interrupt.signal, { model: input.model, params: input.params });
    const stream = await graph.stream(
      { request: input.request, refinePrompt: options.refine },
      { streamMode: ["custom", "values"], signal: interrupt.signal, context },
    );
    for await (const [mode, chunk] of stream) {
      if (mode === "custom") display.update(chunk as ProgressEvent);
      else state = chunk as DiffugenStateValue;
    }
  } catch (err) {
    display.stop();
    process.stderr.write(interrupt.signal.aborted ? "diffugen: interrupted\n" : `diffugen: ${(err as Error).message}\n`);
    return interrupt.signal.aborted ? 130 : 1;
  } finally {
    interrupt.dispose();
    // Waits for the LLM to be back before the process exits.
    await app.close();
  }
  display.stop();
  return report(state, options.out);
}

/** Requests the user can correct, like a bad flag, and a missing sd-cli or sd-server (SD_CPP_BIN, SD_SERVER_BIN): exit 2. */
const usageErrors = new Set(["invalid_request", "model_not_found", "sd_not_found", "sd_server_not_found"]);

function exitCodeFor(code: string): number {
  return usageErrors.has(code) ? 2 : 1;
}

/**
 * Where the JSON log goes. The terminal is for the progress and the results: the log goes
 * to DATA_DIR/logs/diffugen.log, unless asked for (--verbose, LOG_FORMAT=json), then to
 * stderr through the display, so that a line never lands in the middle of the bars.
 */
function logDestination(config: Config, options: GenerateOptions, display: ProgressDisplay): DestinationStream {
  if (options.verbose || config.logFormat === "json") return { write: (line: string) => display.log(line) };
  return fileLogDestination(logFilePath(config.dataDir));
}

function requestFrom(prompt: string, options: GenerateOptions): Record<string, unknown> {
  const request: Record<string, unknown> = { prompt };
  for (const { option, field } of generationOptions) {
    const value = options[option.attributeName()];
    if (value !== undefined) request[field] = value;
  }
  return request;
}

function report(state: DiffugenStateValue | undefined, out: string | undefined): number {
  if (!state) {
    process.stderr.write("diffugen: the run produced no result\n");
    return 1;
  }
  for (const warning of state.warnings) process.stderr.write(`warning: ${warning}\n`);
  if (state.error) {
    process.stderr.write(`diffugen: ${state.error.message}\n`);
    // A request the user can correct is a usage error, like a bad flag.
    return exitCodeFor(state.error.code);
  }
  if (state.refined && !state.refined.fellBack) process.stdout.write(`prompt: ${state.refined.prompt}\n`);
  for (const image of state.images) {
    const target = out ? outputName(out, image.index, state.images.length) : image.path;
    if (target !== image.path) {
      fs.mkdirSync(path.dirname(path.resolve(target)), { recursive: true });
      fs.copyFileSync(image.path, target);
      fs.rmSync(image.path, { force: true });
    }
    process.stdout.write(`saved ${path.resolve(target)} (${image.width}x${image.height}, seed ${image.seed}, ${state.model})\n`);
  }
  return 0;
}

/** `fox.png` for one image; `fox_0.png`, `fox_1.png` for a batch, as sd-cli names them. */
function outputName(out: string, index: number, count: number): string {
  if (count === 1) return out;
  const ext = path.extname(out) || ".png";
  return `${out.slice(0, out.length - path.extname(out).length)}_${index}${ext}`;
}
