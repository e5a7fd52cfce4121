// @ts-check
/**
 * The model context of the fake sd-server: what new_sd_ctx prints at start-up, and what one
 * generate_image call prints and costs (stable-diffusion.cpp 97d29908). Weights load lazily,
 * each component the first time it is needed (text encoder before conditioning, UNet inside
 * sampling step 1, VAE decoder inside the first decode), and stay loaded for the life of the
 * process; `--eager-load` loads them all before `listening on`.
 *
 * The times come from `Timing` (tests/fakes/sd-server/timing.mjs); the simulated GPU from
 * tests/fakes/fake-gpu.mjs. With a card there, the engine claims VRAM as holder sd-<pid>: the
 * need of the first request's shape when its UNet loads (or of the default size with
 * `--eager-load`), held until the process exits and raised when a later request needs more (a
 * bigger size); it never shrinks (a simplification: the real server frees its compute buffers
 * between generations and keeps only the weights). A raise the card has no room for fails that
 * request like a compute-buffer allocation does (cudaMalloc out of memory, `<unet>: failed to
 * allocate the compute buffer`, sampling failed: 500) and keeps the old claim.
 */
import fs from "node:fs";
import { performance } from "node:perf_hooks";
import * as fakeGpu from "../fake-gpu.mjs";
import { samplingBar, loadingBar, f2 } from "../sd-cli/output.mjs";
import { detectProfile, fileFormat, logWeightTypeStats, weightTypeOf } from "../sd-cli/models.mjs";
import { SAMPLERS } from "../sd-cli/options.mjs";
import { out } from "./log.mjs";
import { resolvedWidth, resolvedHeight } from "./params.mjs";

/** @typedef {import("./log.mjs").ServerLogger} ServerLogger */
/** @typedef {import("./params.mjs").CtxParams} CtxParams */
/** @typedef {import("./params.mjs").GenParams} GenParams */
/** @typedef {import("./timing.mjs").Timing} Timing */
/** @typedef {import("../sd-cli/models.mjs").Stage} Stage */
/** @typedef {import("../sd-cli/models.mjs").Profile} Profile */

const CUDA_SOURCE = "/src/stable-diffusion.cpp/ggml/src/ggml-cuda/ggml-cuda.cu";

/** denoiser.hpp get_sigmas: the text and line each scheduler logs. */
const SIGMA_LINES = /** @type {Record<string, [number, string]>} */ ({
  discrete: [1051, "get_sigmas with discrete scheduler"],
  karras: [1055, "get_sigmas with Karras scheduler"],
  beta: [1059, "get_sigmas with Beta scheduler"],
  exponential: [1063, "get_sigmas exponential scheduler"],
  ays: [1067, "get_sigmas with Align-Your-Steps scheduler"],
  gits: [1071, "get_sigmas with GITS scheduler"],
  sgm_uniform: [1075, "get_sigmas with SGM Uniform scheduler"],
  simple: [1079, "get_sigmas with Simple scheduler"],
  smoothstep: [1083, "get_sigmas with SmoothStep scheduler"],
  bong_tangent: [1087, "get_sigmas with bong_tangent scheduler"],
  kl_optimal: [1091, "get_sigmas with KL Optimal scheduler"],
  lcm: [1095, "get_sigmas with LCM scheduler"],
  ltx2: [1099, "get_sigmas with LTX2 scheduler"],
  logit_normal: [1103, "get_sigmas with Logit-Normal scheduler"],
  flux2: [1108, "get_sigmas with Flux2 scheduler"],
  flux: [1113, "get_sigmas with Flux scheduler"],
});

/** @param {number} ms @returns {Promise<void>} */
export function sleep(ms) {
  return new Promise((resolve) => (ms > 0 ? setTimeout(resolve, ms) : setImmediate(resolve)));
}
const now = () => performance.now();
const since = (/** @type {number} */ t) => (now() - t) / 1000;

/**
 * @typedef {object} EngineOptions
 * @property {ServerLogger} log
 * @property {CtxParams} ctx
 * @property {Timing} timing
 * @property {string | undefined} gpuDir
 * @property {boolean} oom             FAKE_SD_OOM: the UNet never fits
 * @property {string | undefined} vramMib FAKE_SD_VRAM_MIB: a forced need (with a card)
 * @property {number} crashAtStep      FAKE_SD_CRASH_AT_STEP (0: never), counted over the process
 * @property {"abort" | "fail"} crashMode
 * @property {number} hangAtStep       FAKE_SD_HANG_AT_STEP (0: never)
 * @property {string | undefined} timestamps FAKE_SD_TIMESTAMPS
 * @property {() => never} abort       die by SIGABRT (the GPU marker released first)
 */

/** @typedef {{ ok: true, width: number, height: number, seeds: bigint[] } | { ok: false }} GenerateResult */

export class Engine {
  /** @param {EngineOptions} o */
  constructor(o) {
    this.o = o;
    this.log = o.log;
    this.ctx = o.ctx;
    /** @type {Profile} */
    this.profile = detectProfile(o.ctx.modelPath !== "" && fs.existsSync(o.ctx.modelPath) ? { model: o.ctx.modelPath } : { diffusionModel: o.ctx.diffusionModelPath });
    this.loaded = { te: false, diffusion: false, vaeDecoder: false, vaeEncoder: false };
    this.warm = { cond: false, step: false, decode: false };
    this.holdsGpu = false;
    /** MiB claimed on the card (0: none). */
    this.vramMiB = 0;
    /** @type {Set<string>} components whose file was given but is missing */
    this.missing = new Set();
    this.useTae = false;
    this.globalStep = 0;
    this.generations = 0;
  }

  /** Remove the simulated GPU marker and claim (every way out of the process calls this). */
  releaseGpu() {
    if (this.o.gpuDir && this.vramMiB > 0) {
      this.vramMiB = 0;
      try {
        fakeGpu.release(this.o.gpuDir, fakeGpu.sdHolder(process.pid));
      } catch {
        // the test may already have removed the directory
      }
    }
    if (this.o.gpuDir && this.holdsGpu) {
      this.holdsGpu = false;
      try {
        fakeGpu.markDiffusionEnded(this.o.gpuDir, process.pid);
      } catch {
        // the test may already have removed the directory
      }
    }
  }

  /**
   * Weights are about to go to the GPU: take the marker. Without a card, an LLM resident is a
   * violation and the allocation fails: returns false when it must fail (out of memory). With a
   * card, memory is claimed by claimVram instead.
   * @param {string} what
   */
  claimGpu(what) {
    const dir = this.o.gpuDir;
    if (!dir || this.holdsGpu) return true;
    const resident = fakeGpu.readCard(dir) ? [] : fakeGpu.residentModels(dir);
    if (resident.length > 0) {
      fakeGpu.recordViolation(dir, "sd-server", `sd-server loads ${what} while the LLM is resident in VRAM: ${resident.join(", ")}`);
      return false;
    }
    fakeGpu.markDiffusionStarted(dir, process.pid);
    this.holdsGpu = true;
    return true;
  }

  /**
   * With a card: hold at least the need of this shape (claim, or raise the claim). Undefined
   * without a card; else the claim's answer (ok when the held claim already covers it).
   * @param {number} width @param {number} height @param {boolean} vaeTiling
   * @returns {{ ok: boolean, needMiB: number, freeMiB: number } | undefined}
   */
  claimVram(width, height, vaeTiling) {
    const dir = this.o.gpuDir;
    if (!dir || !fakeGpu.readCard(dir)) return undefined;
    const need = fakeGpu.vramNeedFromEnv(this.o.vramMib, width, height) ?? fakeGpu.vramNeedMiB({ version: this.profile.version, width, height, vaeTiling });
    if (need <= this.vramMiB) return { ok: true, needMiB: need, freeMiB: fakeGpu.freeMiB(dir) };
    const r = fakeGpu.claim(dir, { holder: fakeGpu.sdHolder(process.pid), kind: "sd", mib: need, label: `sd-server ${this.profile.version} ${width}x${height}` });
    if (r.ok) this.vramMiB = r.mib;
    return { ok: r.ok, needMiB: need, freeMiB: r.freeMiB };
  }

  /**
   * One out-of-memory, in oom.jsonl (with FAKE_GPU_DIR).
   * @param {"no-room" | "llm-resident" | "forced"} reason @param {number | null} needMiB @param {number | null} freeMiB @param {string} what
   */
  recordOom(reason, needMiB, freeMiB, what) {
    if (!this.o.gpuDir) return;
    try {
      fakeGpu.recordOom(this.o.gpuDir, { by: "sd-server", pid: process.pid, reason, needMiB, freeMiB, what });
    } catch {
      // the test may already have removed the directory
    }
  }

  // -------------------------------------------------------------------------------------------
  // new_sd_ctx
  // -------------------------------------------------------------------------------------------

  /**
   * The start-up lines. Returns false after the ERROR lines when the context cannot be made
   * (the caller prints `new_sd_ctx_t failed` and exits 1).
   * @param {boolean} eagerLoad
   * @param {{ width: number, height: number }} [defaultSize] the size --eager-load claims for (-W/-H)
   */
  async open(eagerLoad, defaultSize = { width: 512, height: 512 }) {
    const log = this.log;
    const ctx = this.ctx;
    /** @param {string} file */
    const exists = (file) => {
      try {
        return fs.statSync(file).isFile();
      } catch {
        return false;
      }
    };
    /** @param {string} file @returns {boolean} init_from_file */
    const initFromFile = (file) => {
      if (!exists(file)) {
        log.warn("model_loader.cpp", 254, `file ${file} not found`);
        return false;
      }
      log.info("model_loader.cpp", 242, `load ${file} using ${fileFormat(file)} format`);
      return true;
    };
    let modelOk = false;
    let diffusionOk = false;
    if (ctx.modelPath !== "") {
      log.info("stable-diffusion.cpp", 713, `loading model from '${ctx.modelPath}'`);
      modelOk = initFromFile(ctx.modelPath);
      if (!modelOk) log.error("stable-diffusion.cpp", 715, `init model loader from file failed: '${ctx.modelPath}'`);
    }
    if (ctx.diffusionModelPath !== "") {
      log.info("stable-diffusion.cpp", 720, `loading diffusion model from '${ctx.diffusionModelPath}'`);
      diffusionOk = initFromFile(ctx.diffusionModelPath);
      if (!diffusionOk) log.warn("stable-diffusion.cpp", 722, `loading diffusion model from '${ctx.diffusionModelPath}' failed`);
    }
    /** @type {[string, string, string, number][]} component, label, file, line */
    const components = [
      ["clip_l", "clip_l", ctx.clipLPath, 741],
      ["clip_g", "clip_g", ctx.clipGPath, 748],
      ["t5xxl", "t5xxl", ctx.t5xxlPath, 762],
      ["llm", "llm", ctx.llmPath, 777],
      ["vae", "vae", ctx.vaePath, 791],
      ["taesd", "tae", ctx.taesdPath, 799],
    ];
    for (const [key, label, file, line] of components) {
      if (file === "") continue;
      log.info("stable-diffusion.cpp", line, `loading ${label} from '${file}'`);
      if (!initFromFile(file)) {
        log.warn("stable-diffusion.cpp", line + 2, `loading ${label} from '${file}' failed`);
        this.missing.add(key);
      } else if (key === "taesd") {
        this.useTae = true;
      }
    }
    if (!modelOk && !diffusionOk) {
      log.error("stable-diffusion.cpp", 905, `get sd version from file failed: '${ctx.modelPath}'`);
      return false;
    }
    const p = this.profile;
    log.info("stable-diffusion.cpp", 908, `Version: ${p.version} `);
    const teType = modelOk ? weightTypeOf(ctx.modelPath) : weightTypeOf(ctx.t5xxlPath || ctx.llmPath || ctx.clipLPath);
    const dmType = modelOk ? weightTypeOf(ctx.modelPath) : weightTypeOf(ctx.diffusionModelPath);
    const vaeType = modelOk ? weightTypeOf(ctx.modelPath) : ctx.vaePath ? weightTypeOf(ctx.vaePath) : "f32";
    logWeightTypeStats(log, p, { te: teType, diffusion: dmType, vae: vaeType });

    // building the model graphs: most of the time before `listening on` (listenMs counts from
    // the spawn; performance.now() is the time since this process started)
    await sleep(Math.max(0, this.o.timing.listenMs - performance.now()));

    if (this.useTae) {
      log.info("stable-diffusion.cpp", 1502, "using TAE for encoding / decoding");
    } else {
      log.info("stable-diffusion.cpp", 1512, "using VAE for encoding / decoding");
      log.info("auto_encoder_kl.hpp", 527, "vae decoder: ch = 128");
    }
    if (eagerLoad) {
      const all = { desc: p.diffusion.desc, tensors: p.te.tensors + p.diffusion.tensors + p.vaeFull.tensors, mb: p.totalMB };
      const noLlm = this.claimGpu("all weights (--eager-load)");
      const vram = noLlm && !this.o.oom ? this.claimVram(defaultSize.width, defaultSize.height, false) : undefined;
      if (!noLlm || this.o.oom || (vram && !vram.ok)) {
        const what = `eager load, ${p.version} ${defaultSize.width}x${defaultSize.height}`;
        if (this.o.oom) this.recordOom("forced", null, null, what);
        else if (!noLlm) this.recordOom("llm-resident", null, null, what);
        else if (vram) this.recordOom("no-room", vram.needMiB, vram.freeMiB, what);
        await sleep(Math.min(this.o.timing.load.eager, 5));
        this.cudaOom(p.totalMB);
        log.error("stable-diffusion.cpp", 1699, "model params eager load failed");
        return false;
      }
      await this.loadTensors(all, this.o.timing.load.eager, false);
      this.loaded = { te: true, diffusion: true, vaeDecoder: true, vaeEncoder: true };
    }
    log.info(
      "stable-diffusion.cpp",
      1745,
      `total params memory size = ${f2(p.totalMB)}MB (VRAM 0.00MB, RAM ${f2(p.totalMB)}MB): ` +
        `text_encoders ${f2(p.te.mb)}MB(RAM), diffusion_model ${f2(p.diffusion.mb)}MB(RAM), ` +
        `vae ${f2(p.vaeFull.mb)}MB(RAM), controlnet 0.00MB(N/A), extensions 0.00MB(N/A)`,
    );
    const predictionLines = /** @type {Record<string, number>} */ ({
      "running in eps-prediction mode": 1849,
      "running in v-prediction mode": 1852,
      "running in FLOW mode": 1864,
      "running in Flux FLOW mode": 1870,
    });
    log.info("stable-diffusion.cpp", predictionLines[p.predictionLine] ?? 1849, p.predictionLine);
    return true;
  }

  /** ggml-cuda's allocation failure, then the model manager's. @param {number} mb */
  cudaOom(mb) {
    this.log.ggmlError(`ggml_backend_cuda_buffer_type_alloc_buffer: allocating ${f2(mb)} MiB on device 0: cudaMalloc failed: out of memory\n`);
    this.log.error("model_manager.cpp", 737, `model manager alloc params backend buffer failed, size = ${f2(mb)}MB`);
  }

  /**
   * Lazy tensor loading: `#` bars about every 200 ms of load time, the last one N/N with a
   * newline, then "loading tensors completed". With `always` the phase shows a few bars even
   * when it is short (the UNet, so parsers see intermediate bars).
   * @param {Stage} stage @param {number} ms @param {boolean} always
   */
  async loadTensors(stage, ms, always) {
    const start = now();
    const bytes = stage.mb * 1024 * 1024;
    const count = Math.min(30, Math.floor(ms / 200));
    /** @type {number[]} */
    const fractions = [];
    if (count > 0) for (let k = 1; k <= count; k++) fractions.push(k / (count + 1));
    else if (always) fractions.push(0.07, 0.43, 0.73);
    let elapsed = 0;
    for (const f of fractions) {
      const target = ms * f;
      await sleep(target - elapsed);
      elapsed = target;
      const done = Math.max(1, Math.round(stage.tensors * f));
      out(1, loadingBar(done, stage.tensors, (bytes * (done / stage.tensors)) / Math.max(since(start), 0.001)));
    }
    await sleep(ms - elapsed);
    out(1, loadingBar(stage.tensors, stage.tensors, bytes / Math.max(since(start), 0.001)));
    const taking = since(start);
    this.log.info(
      "model_loader.cpp",
      1304,
      `loading tensors completed, taking ${f2(taking)}s (read: ${f2(taking * 0.8)}s, memcpy: 0.00s, convert: 0.00s, copy_to_backend: 0.00s)`,
    );
  }

  // -------------------------------------------------------------------------------------------
  // generate_image
  // -------------------------------------------------------------------------------------------

  /**
   * One generate_image call (the caller holds the generation mutex). The images are rendered by
   * the caller from the returned size and seeds.
   * @param {GenParams} g @param {boolean} img2img @returns {Promise<GenerateResult>}
   */
  async generate(g, img2img) {
    const log = this.log;
    const p = this.profile;
    const T = this.o.timing;
    this.generations++;
    const t0 = now();
    let width = resolvedWidth(g);
    let height = resolvedHeight(g);
    const multiple = p.spatialMultiple;
    const alignedW = Math.ceil(width / multiple) * multiple;
    const alignedH = Math.ceil(height / multiple) * multiple;
    if (alignedW !== width || alignedH !== height) {
      log.warn("stable-diffusion.cpp", 4154, `align generation request up ${width}x${height} to ${alignedW}x${alignedH} (multiple=${multiple})`);
    }
    width = alignedW;
    height = alignedH;
    log.info("stable-diffusion.cpp", 5628, `generate_image ${width}x${height}`);
    if (g.loraMap.size + g.highNoiseLoraMap.size > 0) log.info("stable-diffusion.cpp", 2135, "apply_loras completed, taking 0.00s");

    const scheduler = g.sample.scheduler ?? p.defaultScheduler;
    const [sigmaLine, sigmaText] = SIGMA_LINES[scheduler] ?? [1118, "get_sigmas with discrete scheduler (default)"];
    log.info("denoiser.hpp", sigmaLine, sigmaText);
    const method = g.sample.method ?? p.defaultSampler;
    log.info("stable-diffusion.cpp", 4380, `sampling using ${SAMPLERS.get(method) ?? method} method`);

    // the first load attempt of this request decides (one violation per request at most)
    /** @type {boolean | null} */
    let gpuVerdict = null;
    const needGpu = (/** @type {string} */ what) => {
      if (gpuVerdict === false) return false;
      gpuVerdict = this.claimGpu(what);
      return gpuVerdict;
    };
    let fitsGpu = true;
    const prepareStart = now();
    let sampleSteps = g.sample.steps;
    const vaeMissing = this.missing.has("vae") || this.missing.has("taesd");
    if (img2img && g.initImage) {
      log.info("stable-diffusion.cpp", 4925, "IMG2IMG");
      if (g.strength < 1) {
        let tEnc = Math.trunc(Math.fround(sampleSteps * Math.fround(g.strength)));
        if (tEnc === sampleSteps) tEnc--;
        log.info("stable-diffusion.cpp", 4969, `target t_enc is ${tEnc} steps`);
        sampleSteps = tEnc + 1;
      }
    }
    const encodes = (img2img && g.initImage ? 1 : 0) + g.refImages.length;
    if (g.refImages.length > 0) log.info("stable-diffusion.cpp", 5066, "EDIT mode");
    if (encodes > 0) {
      if (vaeMissing) {
        this.failMissing(this.missing.has("taesd") ? "encoder.layers.0.weight" : "first_stage_model.encoder.conv_in.weight", this.missing.has("taesd") ? "taesd" : "vae");
        log.error("stable-diffusion.cpp", 5023, "failed to encode init image");
        return { ok: false };
      }
      if (!this.loaded.vaeEncoder) {
        fitsGpu = needGpu("the VAE") && fitsGpu;
        await this.loadTensors(p.vaeFull, T.load.vae, false);
        this.loaded.vaeEncoder = true;
        this.loaded.vaeDecoder = true;
      }
      for (let i = 0; i < encodes; i++) await sleep(T.decodeMs);
      log.info("stable-diffusion.cpp", 5186, `encode_first_stage completed, taking ${f2(since(prepareStart))}s`);
    }

    // conditioning: the text encoder loads lazily
    const condStart = encodes > 0 ? now() : prepareStart;
    const missingTe = ["clip_l", "clip_g", "t5xxl", "llm"].find((c) => this.missing.has(c));
    if (missingTe) {
      const tensor = {
        clip_l: "text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight",
        clip_g: "text_encoders.clip_g.transformer.text_model.embeddings.token_embedding.weight",
        t5xxl: "text_encoders.t5xxl.transformer.shared.weight",
        llm: "text_encoders.llm.model.embed_tokens.weight",
      }[missingTe];
      this.failMissing(tensor ?? "", missingTe === "t5xxl" ? "t5" : missingTe === "llm" ? "llm" : "clip");
      return { ok: false };
    }
    if (!this.loaded.te) {
      fitsGpu = needGpu("the text encoder") && fitsGpu;
      await this.loadTensors(p.te, T.load.te, false);
      this.loaded.te = true;
    }
    await sleep(T.condMs + (this.warm.cond ? 0 : T.warmup.cond));
    this.warm.cond = true;
    log.info("stable-diffusion.cpp", 5296, `get_learned_condition completed, taking ${f2(since(condStart))}s`);

    // sampling
    const denoiseStart = now();
    for (let b = 0; b < g.batchCount; b++) {
      const seed = BigInt.asIntN(64, g.seed + BigInt(b));
      const samplingStart = now();
      log.info("stable-diffusion.cpp", 5679, `generating image: ${b + 1}/${g.batchCount} - seed ${seed}`);
      if (!this.loaded.diffusion) {
        fitsGpu = needGpu("the diffusion model") && fitsGpu;
        const vram = fitsGpu && !this.o.oom ? this.claimVram(width, height, g.vaeTiling) : undefined;
        if (!fitsGpu || this.o.oom || (vram && !vram.ok)) {
          const what = `UNet load, ${p.version} ${width}x${height}`;
          if (this.o.oom) this.recordOom("forced", null, null, what);
          else if (!fitsGpu) this.recordOom("llm-resident", null, null, what);
          else if (vram) this.recordOom("no-room", vram.needMiB, vram.freeMiB, what);
          await sleep(Math.min(T.load.diffusion, 5));
          this.cudaOom(p.diffusion.mb);
          log.error("ggml_extend.hpp", 1989, `${p.diffusion.desc} prepare graph weights failed`);
          log.error("stable-diffusion.cpp", 5716, `sampling for image ${b + 1}/${g.batchCount} failed after ${f2(since(samplingStart))}s`);
          return { ok: false };
        }
        await this.loadTensors(p.diffusion, T.load.diffusion, true);
        this.loaded.diffusion = true;
      } else if (b === 0) {
        // the weights are in; a bigger shape needs bigger compute buffers
        const held = this.vramMiB;
        const vram = this.claimVram(width, height, g.vaeTiling);
        if (vram && !vram.ok) {
          this.recordOom("no-room", vram.needMiB, vram.freeMiB, `compute buffer, ${p.version} ${width}x${height}`);
          await sleep(Math.min(T.stepMs, 5));
          this.log.ggmlError(
            `ggml_backend_cuda_buffer_type_alloc_buffer: allocating ${f2(vram.needMiB - held)} MiB on device 0: cudaMalloc failed: out of memory\n`,
          );
          log.error("ggml_extend.hpp", 1876, `${p.diffusion.desc}: failed to allocate the compute buffer`);
          log.error("stable-diffusion.cpp", 5716, `sampling for image ${b + 1}/${g.batchCount} failed after ${f2(since(samplingStart))}s`);
          return { ok: false };
        }
      }
      let lastStep = samplingStart;
      for (let step = 1; step <= sampleSteps; step++) {
        this.globalStep++;
        if (this.o.hangAtStep > 0 && this.globalStep >= this.o.hangAtStep) await new Promise(() => {});
        await sleep(T.stepMs + (this.warm.step ? 0 : T.warmup.step));
        this.warm.step = true;
        if (this.o.crashAtStep > 0 && this.globalStep === this.o.crashAtStep) {
          if (this.o.crashMode === "fail") {
            log.error("stable-diffusion.cpp", 2790, "diffusion model compute failed");
            log.error("stable-diffusion.cpp", 5716, `sampling for image ${b + 1}/${g.batchCount} failed after ${f2(since(samplingStart))}s`);
            return { ok: false };
          }
          this.cudaCrash();
        }
        const t = now();
        out(1, samplingBar(step, sampleSteps, (t - lastStep) / 1000));
        lastStep = t;
        if (this.o.timestamps) {
          fs.appendFileSync(
            this.o.timestamps,
            `${JSON.stringify({ step, image: b + 1, request: this.generations, at: performance.timeOrigin + performance.now() })}\n`,
          );
        }
      }
      log.info("stable-diffusion.cpp", 5711, `sampling completed, taking ${f2(since(samplingStart))}s`);
    }
    log.info("stable-diffusion.cpp", 5723, `generating ${g.batchCount} latent images completed, taking ${f2(since(denoiseStart))}s`);

    // decoding: the VAE decoder loads lazily inside the first decode
    log.info("stable-diffusion.cpp", 5321, `decoding ${g.batchCount} latents`);
    if (vaeMissing) {
      this.failMissing(this.missing.has("taesd") ? "decoder.layers.0.weight" : "first_stage_model.decoder.conv_in.weight", this.missing.has("taesd") ? "taesd" : "vae");
      log.error("stable-diffusion.cpp", 5381, "decode_first_stage failed for latent 1");
      return { ok: false };
    }
    const decodeStart = now();
    for (let i = 1; i <= g.batchCount; i++) {
      const latentStart = now();
      if (!this.loaded.vaeDecoder) {
        needGpu("the VAE");
        await this.loadTensors(p.vaeDecoder, T.load.vae, false);
        this.loaded.vaeDecoder = true;
      }
      await sleep(T.decodeMs + (this.warm.decode ? 0 : T.warmup.decode));
      this.warm.decode = true;
      log.info("stable-diffusion.cpp", 5387, `latent ${i} decoded, taking ${f2(since(latentStart))}s`);
    }
    log.info("stable-diffusion.cpp", 5391, `decode_first_stage completed, taking ${f2(since(decodeStart))}s`);
    log.info("stable-diffusion.cpp", 5861, `generate_image completed in ${f2(since(t0))}s`);
    const seeds = [];
    for (let b = 0; b < g.batchCount; b++) seeds.push(BigInt.asIntN(64, g.seed + BigInt(b)));
    return { ok: true, width, height, seeds };
  }

  /** A component whose file was missing at start-up: its runner fails when first used. @param {string} tensor @param {string} desc */
  failMissing(tensor, desc) {
    this.log.error("model_loader.cpp", 1282, `tensor '${tensor}' not in model file`);
    this.log.error("ggml_extend.hpp", 1989, `${desc} prepare graph weights failed`);
  }

  /** FAKE_SD_CRASH_AT_STEP with the abort mode: ggml-cuda's fatal error, then abort(). @returns {never} */
  cudaCrash() {
    for (const line of [
      "CUDA error: an illegal memory access was encountered\n",
      `  current device: 0, in function ggml_backend_cuda_synchronize at ${CUDA_SOURCE}:2628\n`,
      "  cudaStreamSynchronize(cuda_ctx->stream())\n",
    ]) {
      this.log.ggmlError(line);
    }
    out(2, `${CUDA_SOURCE}:88: CUDA error\n`);
    return this.o.abort();
  }
}
