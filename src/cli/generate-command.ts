import fs from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { builder } from "../../graphs/diffugen.js";
import { createOwnedDeps } from "../../graphs/diffugen/dependencies.js";
import type { DiffugenStateValue } from "../../graphs/diffugen/state.js";
import type { Config } from "../config/index.js";
import { parseGenerationRequest, type GenerationRequest } from "../diffusion/index.js";
import type { ProgressEvent } from "../events/progress-event.js";
import { createProgressDisplay } from "./progress-display.js";
import { interruptSignal } from "./interrupt.js";

interface GenerateOptions {
  model?: string;
  steps?: string;
  width?: string;
  height?: string;
  cfgScale?: string;
  guidance?: string;
  seed?: string;
  sampler?: string;
  scheduler?: string;
  negative?: string;
  batch?: string;
  initImage?: string;
  strength?: string;
  vaeTiling?: boolean;
  refine: boolean;
  out?: string;
}

export function registerGenerateCommand(program: Command, loadConfig: () => Config): void {
  program
    .command("generate")
    .description("draw one picture: refine the prompt with the LLM, unload it, run sd.cpp, reload it")
    .argument("<prompt>", "what to draw (LoRA tags like <lora:name:0.8> and (emphasis:1.2) are kept)")
    .option("-m, --model <name>", "image model (registry name or alias)")
    .option("--steps <n>", "sampling steps")
    .option("-W, --width <px>", "width, a multiple of 64")
    .option("-H, --height <px>", "height, a multiple of 64")
    .option("--cfg-scale <x>", "classifier-free guidance scale")
    .option("--guidance <x>", "distilled guidance (Flux)")
    .option("-s, --seed <n>", "seed (-1 for random)")
    .option("--sampler <name>", "sampling method (euler, euler_a, dpm++2m, ...)")
    .option("--scheduler <name>", "scheduler (discrete, karras, ...)")
    .option("-n, --negative <text>", "negative prompt")
    .option("-b, --batch <n>", "number of images")
    .option("-i, --init-image <file>", "img2img: start from this image")
    .option("--strength <x>", "img2img strength, 0-1")
    .option("--vae-tiling", "decode in tiles (less VRAM)")
    .option("--no-refine", "use the prompt as written, without the LLM")
    .option("-o, --out <file>", "where to save the image (a batch gets _0, _1, ...)")
    .action(async (prompt: string, options: GenerateOptions) => {
      process.exitCode = await generate(prompt, options, loadConfig());
    });
}

async function generate(prompt: string, options: GenerateOptions, config: Config): Promise<number> {
  let request: GenerationRequest;
  try {
    request = parseGenerationRequest(requestFrom(prompt, options));
  } catch (err) {
    process.stderr.write(`diffugen: ${(err as Error).message}\n`);
    return 2;
  }
  const deps = createOwnedDeps(config, "diffugen generate");
  const display = createProgressDisplay();
  const interrupt = interruptSignal();

  let state: DiffugenStateValue | undefined;
  try {
    const graph = builder.compile();
    const stream = await graph.stream(
      { request, refinePrompt: options.refine },
      { streamMode: ["custom", "values"], signal: interrupt.signal, context: { deps } },
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
    await deps.scheduler.close();
  }
  display.stop();
  return report(state, options.out);
}

const usageErrors = new Set(["invalid_request", "model_not_found"]);

function requestFrom(prompt: string, o: GenerateOptions): Record<string, unknown> {
  const request: Record<string, unknown> = {
    prompt,
    model: o.model,
    negativePrompt: o.negative,
    width: o.width,
    height: o.height,
    steps: o.steps,
    cfgScale: o.cfgScale,
    guidance: o.guidance,
    seed: o.seed,
    samplingMethod: o.sampler,
    scheduler: o.scheduler,
    batchCount: o.batch,
    initImage: o.initImage,
    strength: o.strength,
    vaeTiling: o.vaeTiling,
  };
  return Object.fromEntries(Object.entries(request).filter(([, v]) => v !== undefined));
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
    return usageErrors.has(state.error.code) ? 2 : 1;
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
