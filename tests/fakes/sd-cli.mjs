#!/usr/bin/env node
// @ts-check
/**
 * A test double for stable-diffusion.cpp's `sd-cli` (master-827), byte-faithful on its streams:
 * same flags (unknown flag → usage + exit 1), same log lines and `\r` progress bars in the same
 * order and chunking, same failure modes, and a real PNG of the requested size. Point the
 * service at it with SD_CPP_BIN=tests/fakes/sd-cli.mjs. See fixtures/sd-cli/ for the real runs it
 * copies and tests/unit/fakes/sd-cli-double.test.ts for what is checked.
 *
 * Model files must exist but their content is ignored; the model kind is guessed from the file
 * name (tests/fakes/sd-cli/models.mjs). Only the img_gen mode is simulated.
 *
 * Behaviour knobs (environment variables; times in milliseconds):
 *
 *   FAKE_SD_STEP_MS=30        time of one sampling step
 *   FAKE_SD_LOAD_MS=20        time of each lazy tensor-loading phase (text encoder, UNet, VAE)
 *   FAKE_SD_DECODE_MS=20      VAE decode (or encode) time per latent
 *   FAKE_SD_COND_MS=10        text-encoder compute time (get_learned_condition)
 *   FAKE_SD_PREVIEW_GAP_MS=2  pause between the two halves of each in-place preview write
 *
 *   FAKE_SD_CRASH_AT_STEP=N   die during sampling step N (counted across the batch, from 1): the
 *                             bars of steps 1..N-1 are printed, step N's never is.
 *   FAKE_SD_CRASH_MODE=abort  (default) a CUDA error: `[ERROR] CUDA error: ...` lines and ggml's
 *                             `ggml-cuda.cu:88: CUDA error` on stderr, then death by SIGABRT.
 *   FAKE_SD_CRASH_MODE=exit   a failed compute: `[ERROR] ... unet compute failed`, `sampling for
 *                             image i/N failed`, `generate failed` on stderr, exit code 1.
 *   FAKE_SD_HANG=1            print nothing at all and never exit (after argument parsing).
 *   FAKE_SD_HANG_AT_STEP=N    print steps 1..N-1, then stop printing and never exit.
 *   FAKE_SD_OOM=1             fail like a CUDA build out of VRAM when the UNet loads (after
 *                             `generating image: 1/N`): cudaMalloc / alloc params buffer / prepare
 *                             graph weights / sampling failed / generate failed on stderr, exit 1.
 *   FAKE_SD_GARBAGE=1         mix junk into a successful run: ggml_cuda_init lines and binary
 *                             bytes on stderr, lines of invalid UTF-8, ANSI codes, a truncated
 *                             multi-byte character and NUL bytes on stdout (always whole lines,
 *                             never inside a bar). Still writes the image and exits 0.
 *   FAKE_SD_TIMESTAMPS=file   after each sampling-step bar write, append
 *                             {"step":s,"image":i,"at":<performance.timeOrigin+now, ms>} (i from 1).
 *   FAKE_SD_LIFETIME=file     when the process ends (exit, error, crash, a handled signal), append
 *                             {"pid":p,"startedAt":t0,"mainAt":t1,"exitedAt":t2} on the same clock:
 *                             t0 = performance.timeOrigin (the process start, before Node boots),
 *                             t1 = when this script began to run, t2 = the moment it leaves. t2 - t0
 *                             is its life by its own clock: the exec before t0 and Node's teardown
 *                             after t2 (a few ms each) are not in it (bench/orchestration.ts).
 *   FAKE_GPU_DIR=dir          the simulated GPU shared with the fake Ollama (tests/fakes/fake-gpu.mjs):
 *                             recordSpawn once the arguments are valid, and hold the GPU marker
 *                             until the process ends (exit, error, crash, SIGTERM/SIGINT/SIGHUP: the
 *                             marker and the claim are removed and the process re-kills itself with
 *                             the signal). Every out-of-memory it prints is also appended to
 *                             oom.jsonl (recordOom: forced, llm-resident or no-room).
 *                             Without a card (no card.json, the strict mode): an LLM resident at
 *                             start is a violation, no marker, and the OOM above at the UNet load;
 *                             an LLM found resident when the UNet loads is also an OOM + violation.
 *                             With a card (setCard): no check at start; when the UNet loads the
 *                             double claims its need (VRAM_NEEDS in sd-cli/models.mjs, from the model
 *                             kind, the aligned width x height and --vae-tiling) as holder sd-<pid>;
 *                             a claim the card has no room for fails with the OOM above (no violation).
 *   FAKE_SD_VRAM_MIB=n        with a card: need n MiB whatever the shape, or per size:
 *                             `1024x1024=9000,*=3000` (unlisted sizes without `*` use the table).
 *   FAKE_SD_HELP_PATH=file    the captured --help text (default: <repo>/../shared/fixtures/sd-cli/help.stdout;
 *                             a short generated usage if absent).
 *
 * Signals: without FAKE_GPU_DIR no handler is installed, so SIGTERM/SIGINT kill it at once, like
 * the real program. The final images are written only after the last step and the decode.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import * as fakeGpu from "./fake-gpu.mjs";
import { parseArgs, fallbackUsage, SAMPLERS, SCHEDULER_ALIASES } from "./sd-cli/options.mjs";
import { Logger, printErrors, writeChunk, writeBuffered, samplingBar, loadingBar, f2, setBrokenPipeHandler, sleepSync } from "./sd-cli/output.mjs";
import { detectProfile, fileFormat, logWeightTypeStats, weightTypeOf } from "./sd-cli/models.mjs";

const VERSION = "stable-diffusion.cpp version master-827-97d2990+, commit 97d29908";
const VERSION_SHORT = "master-827-97d2990+";
const COMMIT = "97d29908";
const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_HELP_PATH = path.resolve(HERE, "../../../shared/fixtures/sd-cli/help.stdout");
const CUDA_SOURCE = "/src/stable-diffusion.cpp/ggml/src/ggml-cuda/ggml-cuda.cu";

// ---------------------------------------------------------------------------------------------
// knobs
// ---------------------------------------------------------------------------------------------

const env = process.env;
/** @param {string} name @param {number} fallback */
function msKnob(name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const n = Number(raw);
  return Number.isFinite(n) && n >= 0 ? n : fallback;
}
/** @param {string} name */
function stepKnob(name) {
  const n = Number(env[name] ?? "");
  return Number.isInteger(n) && n > 0 ? n : 0;
}
const STEP_MS = msKnob("FAKE_SD_STEP_MS", 30);
const LOAD_MS = msKnob("FAKE_SD_LOAD_MS", 20);
const DECODE_MS = msKnob("FAKE_SD_DECODE_MS", 20);
const COND_MS = msKnob("FAKE_SD_COND_MS", 10);
const PREVIEW_GAP_MS = msKnob("FAKE_SD_PREVIEW_GAP_MS", 2);
const CRASH_AT_STEP = stepKnob("FAKE_SD_CRASH_AT_STEP");
const CRASH_MODE = env.FAKE_SD_CRASH_MODE === "exit" ? "exit" : "abort";
const HANG = env.FAKE_SD_HANG === "1" || env.FAKE_SD_HANG === "true";
const HANG_AT_STEP = stepKnob("FAKE_SD_HANG_AT_STEP");
const OOM = env.FAKE_SD_OOM === "1" || env.FAKE_SD_OOM === "true";
const GARBAGE = env.FAKE_SD_GARBAGE === "1" || env.FAKE_SD_GARBAGE === "true";
const TIMESTAMPS = env.FAKE_SD_TIMESTAMPS || undefined;
const LIFETIME = env.FAKE_SD_LIFETIME || undefined;
const GPU_DIR = env.FAKE_GPU_DIR || undefined;
const VRAM_MIB = env.FAKE_SD_VRAM_MIB || undefined;
const HELP_PATH = env.FAKE_SD_HELP_PATH || DEFAULT_HELP_PATH;

// ---------------------------------------------------------------------------------------------
// process lifecycle: the simulated GPU marker goes away on every way out
// ---------------------------------------------------------------------------------------------

/** When this script began to run: what Node's boot took is startedAt..mainAt. */
const MAIN_AT = performance.timeOrigin + performance.now();
let lifetimeNoted = false;
/** FAKE_SD_LIFETIME: the process's own start and end, written once, on every way out. */
function noteLifetime() {
  if (!LIFETIME || lifetimeNoted) return;
  lifetimeNoted = true;
  const line = { pid: process.pid, startedAt: performance.timeOrigin, mainAt: MAIN_AT, exitedAt: performance.timeOrigin + performance.now() };
  try {
    fs.appendFileSync(LIFETIME, `${JSON.stringify(line)}\n`);
  } catch {
    // the test may already have removed the directory
  }
}
process.on("exit", noteLifetime);

let holdsGpu = false;
let claimsVram = false;
function releaseGpu() {
  if (GPU_DIR && claimsVram) {
    claimsVram = false;
    try {
      fakeGpu.release(GPU_DIR, fakeGpu.sdHolder(process.pid));
    } catch {
      // the test may already have removed the directory
    }
  }
  if (GPU_DIR && holdsGpu) {
    holdsGpu = false;
    try {
      fakeGpu.markDiffusionEnded(GPU_DIR, process.pid);
    } catch {
      // the test may already have removed the directory
    }
  }
}
process.on("exit", releaseGpu);

/** @param {number} code @returns {never} */
function exitWith(code) {
  releaseGpu();
  process.exit(code);
}

/** Death by SIGABRT, like abort(3). @returns {never} */
function abortProcess() {
  releaseGpu();
  noteLifetime();
  process.kill(process.pid, "SIGABRT");
  for (;;) sleepSync(1000);
}

/** A reader that went away: the real program dies of SIGPIPE (Node ignores it; 128+13). */
setBrokenPipeHandler(() => exitWith(141));

if (GPU_DIR) {
  for (const signal of /** @type {const} */ (["SIGTERM", "SIGINT", "SIGHUP"])) {
    process.once(signal, () => {
      releaseGpu();
      noteLifetime();
      process.kill(process.pid, signal);
    });
  }
}

/** @param {number} ms @returns {Promise<void>} */
function sleep(ms) {
  return new Promise((resolve) => (ms > 0 ? setTimeout(resolve, ms) : setImmediate(resolve)));
}

/** @returns {Promise<never>} */
function hangForever() {
  setInterval(() => {}, 1 << 30);
  return new Promise(() => {});
}

const now = () => performance.now();
const secondsSince = (/** @type {number} */ t) => (now() - t) / 1000;

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------

const argv = process.argv.slice(2);
const argv0 = process.argv[1] ?? "sd-cli";

function usageText() {
  let text;
  try {
    text = fs.readFileSync(HELP_PATH, "utf8");
  } catch {
    return fallbackUsage(VERSION, argv0);
  }
  return text.replace(/^Usage: \S+ \[options\]$/m, `Usage: ${argv0} [options]`);
}


async function main() {
  if (argv[0] === "--version") {
    writeChunk(1, `${VERSION}\n`);
    exitWith(0);
  }

  const parsed = parseArgs(argv);
  const early = new Logger({ verbose: false, color: argv.includes("--color") });
  switch (parsed.kind) {
    case "usage-exit":
      printErrors(parsed.errors, early);
      writeBuffered(1, usageText());
      exitWith(parsed.code);
    case "error-exit":
      printErrors(parsed.errors, early);
      exitWith(1);
    case "abort":
      writeChunk(2, parsed.exception.terminateMessage());
      abortProcess();
    case "list-devices":
      writeBuffered(
        1,
        "List of available GGML devices:\nName\tDescription\n-------------------\nCUDA0\tNVIDIA GeForce RTX 4060 Laptop GPU\nCPU\tCPU\n\n",
      );
      exitWith(0);
  }
  await generate(parsed.args);
}

/**
 * @param {import("./sd-cli/options.mjs").ParsedArgs} a
 */
async function generate(a) {
  const log = new Logger({ verbose: a.bools.verbose === true, color: a.bools.color === true });
  const S = a.strings;

  // ---- parse_args: process_and_check (usage + exit 1 on failure) ----
  const output = S.output ?? "output.png";
  const mode = a.manual.mode ?? "img_gen";
  const problems = [];
  if (output.length === 0) problems.push({ file: "main.cpp", line: 284, msg: "error: the following arguments are required: output_path" });
  const model = S.model ?? "";
  const diffusionModel = S.diffusion_model ?? "";
  if (problems.length === 0 && mode !== "upscale" && mode !== "metadata" && model === "" && diffusionModel === "") {
    problems.push({ file: "common.cpp", line: 668, msg: "error: the following arguments are required: model_path/diffusion_model\n" });
  }

  let prompt = S.prompt ?? "";
  if (a.manual.prompt_file !== undefined) {
    try {
      prompt = fs.readFileSync(a.manual.prompt_file, "utf8");
    } catch {
      // sd-cli leaves the prompt as it is when the file cannot be read
    }
  }
  const negativePrompt = S.negative_prompt ?? "";
  let seed = a.seed ?? 42n;
  if (seed < 0n) seed = BigInt(Math.floor(Math.random() * 2 ** 31));
  const steps = a.ints.steps ?? 20;
  const batch = a.ints.batch_count ?? 1;
  const strength = a.floats.strength ?? 0.75;
  const cfgScale = a.floats.cfg_scale ?? 7.0;
  const guidance = a.floats.guidance ?? 3.5;

  /** @type {string[]} */
  const loraWarnings = [];
  const loraDir = S.lora_model_dir ?? "";
  const promptWithLora = prompt;
  if (loraDir !== "") {
    prompt = prompt.replace(/<lora:([^:>]+):([^>]+)>/g, (_m, name) => {
      const base = path.isAbsolute(name) ? name : path.join(loraDir, name);
      const found = [base, `${base}.gguf`, `${base}.safetensors`, `${base}.pt`].some((p) => fs.existsSync(p));
      if (!found) loraWarnings.push(path.normalize(base));
      return "";
    });
  }

  if (problems.length === 0) {
    if (batch <= 0) problems.push({ file: "common.cpp", line: 1905, msg: "error: batch_count must be greater than 0" });
    else if (steps <= 0) problems.push({ file: "common.cpp", line: 1910, msg: "error: the sample_steps must be greater than 0\n" });
    else if (strength < 0 || strength > 1) problems.push({ file: "common.cpp", line: 1915, msg: "error: can only work with strength in [0.0, 1.0]\n" });
    else if (cfgScale < 0) problems.push({ file: "common.cpp", line: 1920, msg: "error: cfg_scale must be positive" });
  }
  for (const w of loraWarnings) log.warn("common.cpp", 1742, `can not found lora ${w}`);
  if (problems.length > 0) {
    printErrors(problems, log);
    writeBuffered(1, usageText());
    exitWith(1);
  }

  // ---- main() ----
  log.debug("main.cpp", 733, `version: ${VERSION}`);
  log.debug("main.cpp", 734, "System Info: \n    SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | CUDA = 1 | \n");
  log.debug(
    "main.cpp",
    735,
    `SDCliParams {\n  mode: ${mode},\n  output_path: "${output}",\n  verbose: true,\n  color: ${a.bools.color === true},\n  preview_method: ${a.manual.preview ?? "none"},\n  preview_path: "${S.preview_path ?? "preview.png"}"\n}`,
  );

  if (mode !== "img_gen") {
    log.error("main.cpp", 760, `fake sd-cli: run mode '${mode}' is not simulated`);
    exitWith(1);
  }

  if (GPU_DIR) fakeGpu.recordSpawn(GPU_DIR, process.pid, argv);

  // images given on the command line are loaded before the model
  let width = a.ints.width ?? -1;
  let height = a.ints.height ?? -1;
  const { imageSize } = await import("./sd-cli/image.mjs");
  const initImage = S.init_img ?? "";
  /** @param {string} file @param {boolean} updateSize */
  const loadImage = (file, updateSize) => {
    const size = imageSize(file);
    if (!size) {
      log.error("main.cpp", 835, `load image from '${file}' failed`);
      exitWith(1);
    }
    if (updateSize && !(width > 0 && height > 0)) {
      log.info("common.cpp", 1762, `set width x height to ${size.width} x ${size.height}`);
      width = size.width;
      height = size.height;
    }
  };
  if (initImage !== "") loadImage(initImage, true);
  for (const ref of a.refImages) loadImage(ref, true);
  if (S.mask !== undefined && S.mask !== "") loadImage(S.mask, false);
  if (S.control_image !== undefined && S.control_image !== "") loadImage(S.control_image, false);
  if (!(width > 0)) width = 512;
  if (!(height > 0)) height = 512;

  // the simulated GPU. Without a card: an LLM still resident means the diffusion model cannot
  // fit. With a card, the need is claimed when the UNet loads (below).
  let oomAtUnet = OOM;
  /** @type {Omit<import("./fake-gpu.mjs").OomRecord, "at" | "by" | "pid" | "what">} */
  let oomCause = { reason: "forced", needMiB: null, freeMiB: null };
  if (GPU_DIR) {
    const resident = fakeGpu.readCard(GPU_DIR) ? [] : fakeGpu.residentModels(GPU_DIR);
    if (resident.length > 0) {
      fakeGpu.recordViolation(GPU_DIR, "sd-cli", `sd-cli started while the LLM is resident in VRAM: ${resident.join(", ")}`);
      if (!oomAtUnet) oomCause = { reason: "llm-resident", needMiB: null, freeMiB: null };
      oomAtUnet = true;
    } else {
      fakeGpu.markDiffusionStarted(GPU_DIR, process.pid);
      holdsGpu = true;
    }
  }
  if (HANG) await hangForever();

  if (GARBAGE) {
    writeChunk(2, "ggml_cuda_init: found 1 CUDA devices:\n");
    writeChunk(2, "  Device 0: NVIDIA GeForce RTX 4060 Laptop GPU, compute capability 8.9, VMM: yes\n");
  }

  // ---- new_sd_ctx ----
  /** @type {Set<string>} components whose file is missing */
  const missing = new Set();
  const exists = (/** @type {string} */ f) => {
    try {
      return fs.statSync(f).isFile();
    } catch {
      return false;
    }
  };
  /** @param {string} what @param {string} file @param {number} line */
  const loadComponent = (what, file, line) => {
    log.info("stable-diffusion.cpp", line, `loading ${what} from '${file}'`);
    if (!exists(file)) {
      log.warn("model_loader.cpp", 254, `file ${file} not found`);
      if (what === "model") log.error("stable-diffusion.cpp", line + 2, `init model loader from file failed: '${file}'`);
      else log.warn("stable-diffusion.cpp", line + 2, `loading ${what} from '${file}' failed`);
      return false;
    }
    log.info("model_loader.cpp", 242, `load ${file} using ${fileFormat(file)} format`);
    return true;
  };
  const modelOk = model !== "" && loadComponent("model", model, 713);
  const diffusionOk = diffusionModel !== "" && loadComponent("diffusion model", diffusionModel, 720);
  /** @type {[string, string, number][]} */
  const components = [
    ["clip_l", S.clip_l ?? "", 748],
    ["clip_g", S.clip_g ?? "", 756],
    ["t5xxl", S.t5xxl ?? "", 772],
    ["llm", S.llm ?? "", 780],
    ["vae", S.vae ?? "", 796],
  ];
  for (const [what, file, line] of components) {
    if (file !== "" && !loadComponent(what, file, line)) missing.add(what);
  }
  if (S.taesd !== undefined && S.taesd !== "" && !exists(S.taesd)) {
    log.warn("model_loader.cpp", 254, `file ${S.taesd} not found`);
    missing.add("taesd");
  }
  if (!modelOk && !diffusionOk) {
    log.error("stable-diffusion.cpp", 905, `get sd version from file failed: '${model}'`);
    log.info("main.cpp", 910, "new_sd_ctx_t failed");
    exitWith(1);
  }

  const profile = detectProfile(modelOk ? { model } : { diffusionModel });
  log.info("stable-diffusion.cpp", 908, `Version: ${profile.version} `);
  if (GARBAGE) writeChunk(1, Buffer.concat([junkBytes(12), Buffer.from(" \x1b[31mjunk\x1b[0m \xc3\x28 odd line\n", "latin1")]));

  const teType = modelOk ? weightTypeOf(model) : weightTypeOf(S.t5xxl ?? S.llm ?? S.clip_l);
  const dmType = modelOk ? weightTypeOf(model) : weightTypeOf(diffusionModel);
  const vaeType = modelOk ? weightTypeOf(model) : S.vae ? weightTypeOf(S.vae) : "f32";
  logWeightTypeStats(log, profile, { te: teType, diffusion: dmType, vae: vaeType });
  if (a.bools.diffusion_fa) log.info("stable-diffusion.cpp", 1418, "Using flash attention in the diffusion model");
  const useTae = S.taesd !== undefined && S.taesd !== "";
  if (useTae) {
    log.info("stable-diffusion.cpp", 1512, "using TAE for encoding / decoding");
  } else {
    log.info("stable-diffusion.cpp", 1512, "using VAE for encoding / decoding");
    log.info("auto_encoder_kl.hpp", 527, "vae decoder: ch = 128");
  }
  log.info(
    "stable-diffusion.cpp",
    1745,
    `total params memory size = ${f2(profile.totalMB)}MB (VRAM 0.00MB, RAM ${f2(profile.totalMB)}MB): ` +
      `text_encoders ${f2(profile.te.mb)}MB(RAM), diffusion_model ${f2(profile.diffusion.mb)}MB(RAM), ` +
      `vae ${f2(profile.vaeFull.mb)}MB(RAM), controlnet 0.00MB(N/A), extensions 0.00MB(N/A)`,
  );
  log.info("stable-diffusion.cpp", 1849, profile.predictionLine);

  // ---- generate_image ----
  const t0 = now();
  const multiple = profile.spatialMultiple;
  const alignedW = Math.ceil(width / multiple) * multiple;
  const alignedH = Math.ceil(height / multiple) * multiple;
  if (alignedW !== width || alignedH !== height) {
    log.warn(
      "stable-diffusion.cpp",
      4215,
      `align generation request up ${width}x${height} to ${alignedW}x${alignedH} (multiple=${multiple})`,
    );
  }
  width = alignedW;
  height = alignedH;
  log.info("stable-diffusion.cpp", 5628, `generate_image ${width}x${height}`);

  const samplerName = a.manual.sampling_method ?? profile.defaultSampler;
  const schedulerArg = a.manual.scheduler;
  const scheduler = schedulerArg ? (SCHEDULER_ALIASES.get(schedulerArg) ?? schedulerArg) : profile.defaultScheduler;
  log.info("denoiser.hpp", 1051, `get_sigmas with ${scheduler} scheduler`);
  log.info("stable-diffusion.cpp", 4380, `sampling using ${SAMPLERS.get(samplerName) ?? samplerName} method`);

  let sampleSteps = steps;
  let vaeLoaded = false;

  const tiling = a.bools.vae_tiling === true;
  const tileSpec = a.manual.vae_tile_size;
  let tileX = 32;
  let tileY = 32;
  if (tileSpec) {
    const [tx, ty] = tileSpec.split("x").map((v) => parseInt(v, 10));
    if (tx && tx > 0) tileX = tx;
    tileY = ty && ty > 0 ? ty : tileX;
  }
  const overlap = a.floats.vae_tile_overlap ?? 0.5;
  /** @param {number} latent @param {number} tile */
  const tilesAlong = (latent, tile) => {
    const ov = Math.floor(tile * overlap);
    return latent <= tile ? 1 : Math.max(1, Math.ceil((latent - ov) / Math.max(1, tile - ov)));
  };
  const numTiles = tilesAlong(Math.floor(width / 8), tileX) * tilesAlong(Math.floor(height / 8), tileY);

  /** A VAE pass (encode or decode of one latent): tiles print `=` bars, one per tile. */
  const vaePass = async () => {
    if (!tiling) {
      await sleep(DECODE_MS);
      return;
    }
    let last = now();
    for (let t = 1; t <= numTiles; t++) {
      await sleep(DECODE_MS / numTiles);
      const dt = secondsSince(last);
      last = now();
      writeChunk(1, samplingBar(t, numTiles, dt));
    }
  };

  /**
   * A missing component's tensors are looked up when its runner first needs them.
   * @param {string} tensor @param {string} desc
   */
  const failMissing = (tensor, desc) => {
    log.error("model_loader.cpp", 1282, `tensor '${tensor}' not in model file`);
    log.error("ggml_extend.hpp", 1948, `${desc} prepare graph weights failed`);
  };
  const vaeMissing = missing.has("vae") || missing.has("taesd");
  const vaeTensor = missing.has("taesd") ? "decoder.layers.0.weight" : "first_stage_model.decoder.conv_in.weight";
  const vaeDesc = missing.has("taesd") ? "taesd" : "vae";

  if (initImage !== "" || a.refImages.length > 0) {
    const encodeStart = now();
    if (initImage !== "") {
      log.info("stable-diffusion.cpp", 5150, "IMG2IMG");
      if (strength < 1) {
        let tEnc = Math.trunc(Math.fround(steps * Math.fround(strength)));
        if (tEnc === steps) tEnc--;
        log.info("stable-diffusion.cpp", 5159, `target t_enc is ${tEnc} steps`);
        sampleSteps = tEnc + 1;
      }
    }
    if (a.refImages.length > 0) log.info("stable-diffusion.cpp", 5209, "EDIT mode");
    if (vaeMissing) {
      failMissing(vaeTensor.replace("decoder", "encoder"), vaeDesc);
      log.error("stable-diffusion.cpp", 5196, "failed to encode init image");
      log.error("main.cpp", 1001, "generate failed");
      exitWith(1);
    }
    await loadTensors(profile.vaeFull, false, log);
    vaeLoaded = true;
    for (let i = 0; i < (initImage !== "" ? 1 : 0) + a.refImages.length; i++) await vaePass();
    log.info("stable-diffusion.cpp", 5262, `encode_first_stage completed, taking ${f2(secondsSince(encodeStart))}s`);
  }

  // conditioning: the text encoder loads lazily
  const condStart = now();
  const missingTe = ["clip_l", "clip_g", "t5xxl", "llm"].find((c) => missing.has(c));
  if (missingTe) {
    const tensor = {
      clip_l: "text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight",
      clip_g: "text_encoders.clip_g.transformer.text_model.embeddings.token_embedding.weight",
      t5xxl: "text_encoders.t5xxl.transformer.shared.weight",
      llm: "text_encoders.llm.model.embed_tokens.weight",
    }[missingTe];
    failMissing(tensor ?? "", missingTe === "t5xxl" ? "t5" : missingTe === "llm" ? "llm" : "clip");
    log.error("main.cpp", 1001, "generate failed");
    exitWith(1);
  }
  await loadTensors(profile.te, false, log);
  if (GARBAGE) writeChunk(1, Buffer.concat([Buffer.from("tokenizer: 猫 🐱 ", "utf8"), Buffer.from([0xe2, 0x82, 0x0a])]));
  await sleep(COND_MS);
  log.info("stable-diffusion.cpp", 5296, `get_learned_condition completed, taking ${f2(secondsSince(condStart))}s`);

  // sampling
  const previewMethod = a.manual.preview ?? "none";
  const previewPath = S.preview_path ?? "preview.png";
  const previewInterval = Math.max(1, a.ints.preview_interval ?? 1);
  const image = await import("./sd-cli/image.mjs");
  const denoiseStart = now();
  let globalStep = 0;
  for (let b = 0; b < batch; b++) {
    const imageSeed = seed + BigInt(b);
    const samplingStart = now();
    log.info("stable-diffusion.cpp", 5679, `generating image: ${b + 1}/${batch} - seed ${imageSeed}`);
    const picture = image.makePicture(imageSeed, prompt);
    if (b === 0) {
      if (GPU_DIR && !oomAtUnet && fakeGpu.readCard(GPU_DIR)) {
        const need =
          fakeGpu.vramNeedFromEnv(VRAM_MIB, width, height) ?? fakeGpu.vramNeedMiB({ version: profile.version, width, height, vaeTiling: tiling });
        const granted = fakeGpu.claim(GPU_DIR, {
          holder: fakeGpu.sdHolder(process.pid),
          kind: "sd",
          mib: need,
          label: `sd-cli ${profile.version} ${width}x${height}${batch > 1 ? ` x${batch}` : ""}`,
        });
        if (granted.ok) claimsVram = true;
        else {
          oomAtUnet = true;
          oomCause = { reason: "no-room", needMiB: need, freeMiB: granted.freeMiB };
        }
      } else if (GPU_DIR && !oomAtUnet) {
        const resident = fakeGpu.residentModels(GPU_DIR);
        if (resident.length > 0) {
          fakeGpu.recordViolation(GPU_DIR, "sd-cli", `LLM resident in VRAM while sd-cli loads the diffusion model: ${resident.join(", ")}`);
          oomAtUnet = true;
          oomCause = { reason: "llm-resident", needMiB: null, freeMiB: null };
        }
      }
      if (oomAtUnet) {
        if (GPU_DIR) {
          try {
            fakeGpu.recordOom(GPU_DIR, { by: "sd-cli", pid: process.pid, ...oomCause, what: `UNet load, ${profile.version} ${width}x${height}` });
          } catch {
            // the test may already have removed the directory
          }
        }
        await sleep(Math.min(LOAD_MS, 5));
        writeChunk(2, log.color ? "\x1b[31;1m[ERROR]\x1b[0m " : "[ERROR] ");
        writeChunk(
          2,
          `ggml_backend_cuda_buffer_type_alloc_buffer: allocating ${f2(profile.diffusion.mb)} MiB on device 0: cudaMalloc failed: out of memory\n`,
        );
        log.error("model_manager.cpp", 737, `model manager alloc params backend buffer failed, size = ${f2(profile.diffusion.mb)}MB`);
        log.error("ggml_extend.hpp", 1948, `${profile.diffusion.desc} prepare graph weights failed`);
        log.error("stable-diffusion.cpp", 5716, `sampling for image ${b + 1}/${batch} failed after ${f2(secondsSince(samplingStart))}s`);
        log.error("main.cpp", 1001, "generate failed");
        exitWith(1);
      }
      await loadTensors(profile.diffusion, true, log);
    }
    let lastStep = samplingStart;
    for (let step = 1; step <= sampleSteps; step++) {
      globalStep++;
      if (HANG_AT_STEP > 0 && globalStep >= HANG_AT_STEP) await hangForever();
      await sleep(STEP_MS);
      if (CRASH_AT_STEP > 0 && globalStep >= CRASH_AT_STEP) crash(log, b + 1, batch, samplingStart);
      const t = now();
      writeChunk(1, samplingBar(step, sampleSteps, (t - lastStep) / 1000));
      lastStep = t;
      if (TIMESTAMPS) {
        fs.appendFileSync(
          TIMESTAMPS,
          `${JSON.stringify({ step, image: b + 1, at: performance.timeOrigin + performance.now() })}\n`,
        );
      }
      if (GARBAGE && globalStep === 1) {
        writeChunk(2, "ggml_backend_cuda_graph_compute: CUDA graph update failed\n");
        writeChunk(2, Buffer.concat([junkBytes(20), Buffer.from("\n")]));
      }
      if (previewMethod !== "none" && step % previewInterval === 0) {
        const proj = previewMethod === "proj";
        const pw = proj ? Math.max(1, Math.floor(width / 8)) : width;
        const ph = proj ? Math.max(1, Math.floor(height / 8)) : height;
        const bytes = image.encodePng(image.renderPixels(picture, pw, ph, step / sampleSteps, step), pw, ph);
        try {
          await image.writeInPlace(previewPath, bytes, PREVIEW_GAP_MS, sleep);
        } catch {
          log.error("main.cpp", 379, `save preview image to '${previewPath}' failed`);
        }
      }
    }
    log.info("stable-diffusion.cpp", 5711, `sampling completed, taking ${f2(secondsSince(samplingStart))}s`);
  }
  log.info("stable-diffusion.cpp", 5723, `generating ${batch} latent images completed, taking ${f2(secondsSince(denoiseStart))}s`);

  // decoding
  log.info("stable-diffusion.cpp", 5321, `decoding ${batch} latents`);
  if (vaeMissing) {
    failMissing(vaeTensor, vaeDesc);
    log.error("stable-diffusion.cpp", 5383, "decode_first_stage failed for latent 1");
    log.error("main.cpp", 1001, "generate failed");
    exitWith(1);
  }
  const decodeStart = now();
  if (!vaeLoaded) await loadTensors(profile.vaeDecoder, false, log);
  for (let i = 1; i <= batch; i++) {
    const latentStart = now();
    await vaePass();
    log.info("stable-diffusion.cpp", 5387, `latent ${i} decoded, taking ${f2(secondsSince(latentStart))}s`);
  }
  log.info("stable-diffusion.cpp", 5391, `decode_first_stage completed, taking ${f2(secondsSince(decodeStart))}s`);
  if (GARBAGE) writeChunk(1, Buffer.from([0x00, 0x01, 0x02, 0xfe, 0xff, 0x20, 0x62, 0x69, 0x6e, 0x0a]));
  log.info("stable-diffusion.cpp", 5861, `generate_image completed in ${f2(secondsSince(t0))}s`);

  // ---- save_results ----
  const saved = saveResults({
    log,
    output,
    beginIdx: a.ints.output_begin_idx ?? -1,
    count: batch,
    render: (idx) => {
      const s = seed + BigInt(idx);
      const pixels = image.renderPixels(image.makePicture(s, prompt), width, height);
      const meta =
        a.bools.embed_image_metadata === false
          ? undefined
          : imageMetadata({
              prompt: promptWithLora,
              negativePrompt,
              steps,
              cfgScale,
              guidance,
              seed: s,
              width,
              height,
              model: path.basename(modelOk ? model : diffusionModel),
              sampler: samplerName,
              scheduler,
              strength,
            });
      return image.encodePng(pixels, width, height, meta);
    },
  });
  exitWith(saved ? 0 : 1);
}

/**
 * Load one component's tensors lazily: `#` bars, the last one N/N with a newline, then the
 * "loading tensors completed" line. The real loader redraws about every 200 ms; the UNet phase
 * always shows a few intermediate bars so parsers see them even with short phases.
 * @param {import("./sd-cli/models.mjs").Stage} stage @param {boolean} showProgress @param {Logger} log
 */
async function loadTensors(stage, showProgress, log) {
  const start = now();
  const bytes = stage.mb * 1024 * 1024;
  const fractions = showProgress ? [0.07, 0.43, 0.73] : [];
  for (let k = 1; k * 200 < LOAD_MS && !showProgress && k < 10; k++) fractions.push(k / Math.ceil(LOAD_MS / 200));
  let elapsedTarget = 0;
  for (const f of fractions) {
    const target = LOAD_MS * f;
    await sleep(target - elapsedTarget);
    elapsedTarget = target;
    const done = Math.max(1, Math.round(stage.tensors * f));
    const secs = Math.max(secondsSince(start), 0.001);
    writeChunk(1, loadingBar(done, stage.tensors, (bytes * (done / stage.tensors)) / secs));
  }
  await sleep(LOAD_MS - elapsedTarget);
  const secs = Math.max(secondsSince(start), 0.001);
  writeChunk(1, loadingBar(stage.tensors, stage.tensors, bytes / secs));
  const taking = secondsSince(start);
  log.info(
    "model_loader.cpp",
    1304,
    `loading tensors completed, taking ${f2(taking)}s (read: ${f2(taking * 0.8)}s, memcpy: 0.00s, convert: 0.00s, copy_to_backend: 0.00s)`,
  );
}

/**
 * FAKE_SD_CRASH_AT_STEP: the compute of this step fails.
 * @param {Logger} log @param {number} imageIndex @param {number} batch @param {number} samplingStart
 * @returns {never}
 */
function crash(log, imageIndex, batch, samplingStart) {
  if (CRASH_MODE === "exit") {
    log.error("ggml_extend.hpp", 1712, "unet compute failed");
    log.error("stable-diffusion.cpp", 5716, `sampling for image ${imageIndex}/${batch} failed after ${f2(secondsSince(samplingStart))}s`);
    log.error("main.cpp", 1001, "generate failed");
    exitWith(1);
  }
  const tag = log.color ? "\x1b[31;1m[ERROR]\x1b[0m " : "[ERROR] ";
  for (const line of [
    "CUDA error: an illegal memory access was encountered\n",
    `  current device: 0, in function ggml_backend_cuda_synchronize at ${CUDA_SOURCE}:2628\n`,
    "  cudaStreamSynchronize(cuda_ctx->stream())\n",
  ]) {
    writeChunk(2, tag);
    writeChunk(2, line);
  }
  writeChunk(2, `${CUDA_SOURCE}:88: CUDA error\n`);
  abortProcess();
}

/** @param {number} n bytes of junk that never contain \r or \n */
function junkBytes(n) {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) {
    let b = Math.floor(Math.random() * 256);
    if (b === 0x0a || b === 0x0d) b = 0xfe;
    out[i] = i % 3 === 0 ? 0x80 + (b & 0x3f) : b; // bare continuation bytes: never valid UTF-8
  }
  return out;
}

/**
 * The `parameters` text sd-cli embeds in its PNGs.
 * @param {{ prompt: string, negativePrompt: string, steps: number, cfgScale: number, guidance: number,
 *   seed: bigint, width: number, height: number, model: string, sampler: string, scheduler: string,
 *   strength: number }} p
 */
function imageMetadata(p) {
  const f6 = (/** @type {number} */ x) => x.toFixed(6);
  const json = {
    auto_resize_ref_image: true,
    clip_skip: -1,
    control_strength: 0.8999999761581421,
    generator: { commit: COMMIT, name: "stable-diffusion.cpp", version: VERSION_SHORT },
    height: p.height,
    increase_ref_index: false,
    ip_adapter_strength: 1.0,
    mode: "img_gen",
    models: { model: p.model },
    prompt: { negative: p.negativePrompt, positive: p.prompt },
    rng: "cuda",
    sampling: {
      custom_sigmas: [],
      eta: null,
      extra_sample_args: "",
      flow_shift: null,
      guidance: {
        distilled_guidance: p.guidance,
        img_cfg: null,
        slg: { end: 0.20000000298023224, layers: [7, 8, 9], scale: 0.0, start: 0.009999999776482582 },
        txt_cfg: p.cfgScale,
      },
      method: p.sampler,
      scheduler: p.scheduler,
      shifted_timestep: 0,
      steps: p.steps,
    },
    schema: "sdcpp.image.params/v1",
    seed: Number(p.seed),
    strength: p.strength,
    width: p.width,
  };
  return (
    `${p.prompt}\n` +
    (p.negativePrompt ? `Negative prompt: ${p.negativePrompt}\n` : "") +
    `Steps: ${p.steps}, CFG scale: ${f6(p.cfgScale)}, Guidance: ${f6(p.guidance)}, Eta: inf, Seed: ${p.seed}, ` +
    `Size: ${p.width}x${p.height}, Model: ${p.model}, RNG: cuda, Sampler: ${p.sampler} ${p.scheduler}, ` +
    `Version: stable-diffusion.cpp, SDCPP: ${JSON.stringify(json)}`
  );
}

/**
 * main.cpp save_results: `-o out.png -b 2` → out_0.png, out_1.png; printf-style %d patterns;
 * an unknown extension gets ".png" appended; the parent folder is created.
 * @param {{ log: Logger, output: string, beginIdx: number, count: number, render: (idx: number) => Buffer }} o
 */
function saveResults(o) {
  const { log, output, count } = o;
  const parent = path.dirname(output);
  if (output.includes("/") && parent !== "" && parent !== ".") {
    try {
      fs.mkdirSync(parent, { recursive: true });
    } catch (err) {
      const code = /** @type {NodeJS.ErrnoException} */ (err).code;
      const message = code === "EEXIST" || code === "ENOTDIR" ? "Not a directory" : code === "EACCES" ? "Permission denied" : String(code);
      log.error("main.cpp", 441, `failed to create directory '${parent}': ${message}`);
      return false;
    }
  }
  let ext = path.extname(output);
  const known = [".png", ".jpg", ".jpeg", ".webp"].includes(ext.toLowerCase());
  const base = known ? output.slice(0, output.length - ext.length) : output;
  if (!known) ext = ".png";
  const begin = o.beginIdx < 0 ? 0 : o.beginIdx;
  const pattern = /(?:[^%]|^)(?:%%)*(%\d{0,3}d)/;
  /** @param {number} i */
  const nameFor = (i) => {
    if (pattern.test(output)) {
      let name = `${base}${ext}`;
      let m;
      while ((m = pattern.exec(name)) !== null) {
        const spec = /** @type {string} */ (m[1]);
        const at = m.index + m[0].length - spec.length;
        const widthSpec = spec.slice(1, -1);
        const n = String(begin + i);
        const formatted = widthSpec.startsWith("0") ? n.padStart(Number(widthSpec), "0") : n.padStart(Number(widthSpec || "0"), " ");
        name = name.slice(0, at) + formatted + name.slice(at + spec.length);
      }
      return name.replace(/%%/g, "%");
    }
    return `${base}${count > 1 ? `_${begin + i}` : ""}${ext}`;
  };
  let ok = 0;
  for (let i = 0; i < count; i++) {
    const file = nameFor(i);
    let success = true;
    try {
      fs.writeFileSync(file, o.render(i));
    } catch {
      success = false;
    }
    log.info("main.cpp", 490, `save result image ${i} to '${file}' (${success ? "success" : "failure"})`);
    if (success) ok++;
  }
  log.info("main.cpp", 562, `${ok}/${count} images saved`);
  return ok !== 0;
}

main().catch((err) => {
  writeChunk(2, `fake sd-cli internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  exitWith(70);
});
