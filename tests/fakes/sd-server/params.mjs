// @ts-check
/**
 * Generation parameters as sd-server builds them from a request (examples/server/routes_sdapi.cpp
 * build_sdapi_img_gen_request, routes_openai.cpp build_openai_generation_request,
 * routes_sdcpp.cpp parse_img_gen_request, common.cpp SDGenerationParams::from_json_str /
 * resolve / validate), and the metadata it writes (common.cpp get_image_params,
 * build_sdcpp_image_metadata_json, routes_sdapi.cpp prepare_info_field).
 *
 * Numbers keep their C++ types: `int` fields are JS integers, `float` fields are rounded with
 * Math.fround, the seed is a bigint (int64_t).
 */
import path from "node:path";
import {
  JFloat,
  jfloat32,
  parseJson,
  isObject,
  isInteger,
  isNumber,
  toInt,
  toInt64,
  toFloat,
  toStr,
  valueInt,
  valueInt64,
  valueFloat,
  valueBool,
  valueStr,
  dumpJson,
} from "./json.mjs";
import { imageSizeOf } from "../sd-cli/image.mjs";

/** @typedef {import("./json.mjs").JsonValue} JsonValue */
/** @typedef {import("./log.mjs").ServerLogger} ServerLogger */

export const VERSION_SHORT = "master-827-97d2990+";
export const COMMIT = "97d29908";
export const VERSION_LINE = `stable-diffusion.cpp version ${VERSION_SHORT}, commit ${COMMIT}`;

/** sample_method_to_str, in enum order (stable-diffusion.cpp) */
export const SAMPLE_METHODS = [
  "euler", "euler_a", "heun", "dpm2", "dpm++2s_a", "dpm++2m", "dpm++2mv2", "ipndm", "ipndm_v", "lcm",
  "ddim_trailing", "tcd", "res_multistep", "res_2s", "er_sde", "euler_cfg_pp", "euler_a_cfg_pp", "euler_ge",
  "dpm++2m_sde", "dpm++2m_sde_bt", "lms",
];
/** scheduler_to_str, in enum order */
export const SCHEDULER_NAMES = [
  "discrete", "karras", "exponential", "ays", "gits", "sgm_uniform", "simple", "smoothstep", "kl_optimal", "lcm",
  "bong_tangent", "ltx2", "logit_normal", "flux2", "flux", "beta",
];

/** str_to_scheduler: exact names, plus "normal" for discrete. @param {string} s @returns {string | null} */
export function strToScheduler(s) {
  if (s === "normal") return "discrete";
  return SCHEDULER_NAMES.includes(s) ? s : null;
}

/** get_sdapi_sample_method: sd.cpp names first, then the A1111 names (lower-cased). @param {string} name @returns {string | null} */
export function sdapiSampleMethod(name) {
  if (SAMPLE_METHODS.includes(name)) return name;
  /** @type {Record<string, string>} */
  const hardcoded = {
    "euler a": "euler_a",
    k_euler_a: "euler_a",
    euler: "euler",
    k_euler: "euler",
    heun: "heun",
    k_heun: "heun",
    dpm2: "dpm2",
    k_dpm_2: "dpm2",
    lcm: "lcm",
    ddim: "ddim_trailing",
    "dpm++ 2m": "dpm++2m",
    k_dpmpp_2m: "dpm++2m",
    "dpm++ 2m sde": "dpm++2m_sde",
    k_dpmpp_2m_sde: "dpm++2m_sde",
    "dpm++ 2m sde gpu": "dpm++2m_sde_bt",
    k_dpmpp_2m_sde_gpu: "dpm++2m_sde_bt",
    "res multistep": "res_multistep",
    k_res_multistep: "res_multistep",
    "res 2s": "res_2s",
    k_res_2s: "res_2s",
    euler_cfg_pp: "euler_cfg_pp",
    k_euler_cfg_pp: "euler_cfg_pp",
    euler_a_cfg_pp: "euler_cfg_pp",
    k_euler_a_cfg_pp: "euler_cfg_pp",
  };
  return hardcoded[name.replace(/[A-Z]/g, (c) => c.toLowerCase())] ?? null;
}

/**
 * @typedef {object} CtxParams  the model files and context options from the command line
 * @property {string} modelPath
 * @property {string} diffusionModelPath
 * @property {string} clipLPath
 * @property {string} clipGPath
 * @property {string} t5xxlPath
 * @property {string} llmPath
 * @property {string} llmVisionPath
 * @property {string} vaePath
 * @property {string} taesdPath
 * @property {string} controlNetPath
 * @property {string} highNoiseDiffusionModelPath
 * @property {string} uncondDiffusionModelPath
 * @property {string} loraModelDir
 * @property {string} rng
 * @property {string | null} samplerRng
 */

/**
 * @typedef {object} GenParams  SDGenerationParams, the fields the double uses
 * @property {string} prompt
 * @property {string} negativePrompt
 * @property {string} promptWithLora
 * @property {number} clipSkip
 * @property {number} width         -1: unset (512)
 * @property {number} height
 * @property {number} batchCount
 * @property {bigint} seed
 * @property {number} strength
 * @property {number} controlStrength
 * @property {number} ipAdapterStrength
 * @property {boolean} autoResizeRefImage
 * @property {boolean} increaseRefIndex
 * @property {boolean} embedImageMetadata
 * @property {{ steps: number, eta: number, shiftedTimestep: number, flowShift: number, method: string | null,
 *   scheduler: string | null, txtCfg: number, imgCfg: number, distilledGuidance: number, slgScale: number,
 *   slgStart: number, slgEnd: number }} sample
 * @property {number[]} skipLayers
 * @property {number[]} customSigmas
 * @property {string} extraSampleArgs
 * @property {string} cacheMode
 * @property {Map<string, number>} loraMap
 * @property {Map<string, number>} highNoiseLoraMap
 * @property {boolean} hiresEnabled
 * @property {{ width: number, height: number } | null} initImage
 * @property {{ width: number, height: number } | null} maskImage
 * @property {{ width: number, height: number }[]} refImages
 * @property {boolean} vaeTiling
 */

/** @returns {GenParams} SDGenerationParams() */
export function defaultGenParams() {
  return {
    prompt: "",
    negativePrompt: "",
    promptWithLora: "",
    clipSkip: -1,
    width: -1,
    height: -1,
    batchCount: 1,
    seed: 42n,
    strength: Math.fround(0.75),
    controlStrength: Math.fround(0.9),
    ipAdapterStrength: 1,
    autoResizeRefImage: true,
    increaseRefIndex: false,
    embedImageMetadata: true,
    sample: {
      steps: 20,
      eta: Infinity,
      shiftedTimestep: 0,
      flowShift: Infinity,
      method: null,
      scheduler: null,
      txtCfg: 7,
      imgCfg: Infinity,
      distilledGuidance: 3.5,
      slgScale: 0,
      slgStart: Math.fround(0.01),
      slgEnd: Math.fround(0.2),
    },
    skipLayers: [7, 8, 9],
    customSigmas: [],
    extraSampleArgs: "",
    cacheMode: "",
    loraMap: new Map(),
    highNoiseLoraMap: new Map(),
    hiresEnabled: false,
    initImage: null,
    maskImage: null,
    refImages: [],
    vaeTiling: false,
  };
}

/** A deep copy (the request starts from `*runtime.default_gen_params`). @param {GenParams} g @returns {GenParams} */
export function cloneGenParams(g) {
  return {
    ...g,
    sample: { ...g.sample },
    skipLayers: [...g.skipLayers],
    customSigmas: [...g.customSigmas],
    loraMap: new Map(g.loraMap),
    highNoiseLoraMap: new Map(g.highNoiseLoraMap),
    refImages: [...g.refImages],
  };
}

export const resolvedWidth = (/** @type {GenParams} */ g) => (g.width > 0 ? g.width : 512);
export const resolvedHeight = (/** @type {GenParams} */ g) => (g.height > 0 ? g.height : 512);
const sizeIsSet = (/** @type {GenParams} */ g) => g.width > 0 && g.height > 0;

/** sd_basename: after the last '/', else after the last '\'. @param {string} p */
export function sdBasename(p) {
  const i = p.lastIndexOf("/");
  if (i >= 0) return p.slice(i + 1);
  const j = p.lastIndexOf("\\");
  return j >= 0 ? p.slice(j + 1) : p;
}

// ---------------------------------------------------------------------------------------------
// rand(): glibc's TYPE_3 additive generator, seeded by srand(time(nullptr))
// ---------------------------------------------------------------------------------------------

/** The first rand() after srand(seed), as glibc computes it. @param {number} seed */
export function glibcFirstRand(seed) {
  const r = new Int32Array(344 + 1);
  r[0] = seed === 0 ? 1 : seed | 0;
  for (let i = 1; i < 31; i++) {
    const prev = /** @type {number} */ (r[i - 1]);
    const hi = Math.trunc(prev / 127773);
    const lo = prev % 127773;
    let word = 16807 * lo - 2836 * hi;
    if (word < 0) word += 2147483647;
    r[i] = word;
  }
  for (let i = 31; i < 34; i++) r[i] = /** @type {number} */ (r[i - 31]);
  for (let i = 34; i <= 344; i++) r[i] = (/** @type {number} */ (r[i - 31]) + /** @type {number} */ (r[i - 3])) | 0;
  return /** @type {number} */ (r[344]) >>> 1;
}

/** A negative seed becomes srand(time(nullptr)); rand(): two requests in the same second get the same seed. */
export function randomSeed() {
  return BigInt(glibcFirstRand(Math.floor(Date.now() / 1000) | 0));
}

// ---------------------------------------------------------------------------------------------
// base64 images (common.cpp decode_base64_image)
// ---------------------------------------------------------------------------------------------

/** decode_base64_bytes: stops at the first '=' or non-base64 character. @param {string} s */
function decodeBase64Bytes(s) {
  const m = /^[A-Za-z0-9+/]*/.exec(s);
  const body = m ? m[0] : "";
  const whole = body.length - (body.length % 4);
  const bytes = [...Buffer.from(body.slice(0, whole), "base64")];
  const rest = body.length % 4;
  if (rest > 0) {
    const tail = Buffer.from(`${body.slice(whole)}${"A".repeat(4 - rest)}`, "base64");
    for (let k = 0; k < rest - 1; k++) bytes.push(/** @type {number} */ (tail[k]));
  }
  return Buffer.from(bytes);
}

/**
 * decode_base64_image: an optional "data:...," prefix, base64, then stb_image; resized (after a
 * centre crop to the aspect ratio) when an expected size is given.
 * @param {string} encoded @param {number} expectedWidth @param {number} expectedHeight @param {ServerLogger} log
 * @returns {{ width: number, height: number } | null}
 */
export function decodeBase64Image(encoded, expectedWidth, expectedHeight, log) {
  const comma = encoded.indexOf(",");
  const bytes = decodeBase64Bytes(comma >= 0 ? encoded.slice(comma + 1) : encoded);
  if (bytes.length === 0) return null;
  const size = imageSizeOf(bytes);
  if (!size || size.width <= 0 || size.height <= 0) {
    log.error("media_io.cpp", 538, "load image from 'memory' failed");
    return null;
  }
  let { width, height } = size;
  if (expectedWidth > 0 && expectedHeight > 0 && (height !== expectedHeight || width !== expectedWidth)) {
    const dst = Math.fround(expectedWidth / expectedHeight);
    const src = Math.fround(width / height);
    let cropW = width;
    let cropH = height;
    if (src > dst) cropW = Math.trunc(height * dst);
    else if (src < dst) cropH = Math.trunc(width / dst);
    if (cropW !== width || cropH !== height) {
      log.info("media_io.cpp", 575, `crop input image from ${width}x${height} to ${cropW}x${cropH}, image_path = memory`);
      width = cropW;
      height = cropH;
    }
    log.info("media_io.cpp", 592, `resize input image from ${width}x${height} to ${expectedWidth}x${expectedHeight}`);
    width = expectedWidth;
    height = expectedHeight;
  }
  return { width, height };
}

/** set_width_and_height_if_unset @param {GenParams} g @param {{ width: number, height: number }} img @param {ServerLogger} log */
function setSizeIfUnset(g, img, log) {
  if (!sizeIsSet(g)) {
    log.info("common.cpp", 2205, `set width x height to ${img.width} x ${img.height}`);
    g.width = img.width;
    g.height = img.height;
  }
}

// ---------------------------------------------------------------------------------------------
// <sd_cpp_extra_args> and from_json_str
// ---------------------------------------------------------------------------------------------

/**
 * extract_and_remove_sd_cpp_extra_args: the first match's inner text; every match removed.
 * @param {string} text @returns {{ text: string, extracted: string }}
 */
export function extractExtraArgs(text) {
  const re = /<sd_cpp_extra_args>([^\n\r]*?)<\/sd_cpp_extra_args>/;
  const m = re.exec(text);
  if (!m) return { text, extracted: "" };
  return { text: text.replace(new RegExp(re.source, "g"), ""), extracted: m[1] ?? "" };
}

/**
 * SDGenerationParams::from_json_str: every field only when present with the right type; a
 * wrongly typed field is skipped without a word. Returns false (after an ERROR line) when the
 * text is not JSON or an image / lora field is invalid. Array element type errors throw.
 * @param {GenParams} g @param {string} text @param {ServerLogger} log
 * @param {((p: string) => string) | undefined} loraResolver
 */
export function fromJsonStr(g, text, log, loraResolver) {
  /** @type {JsonValue} */
  let j;
  try {
    j = parseJson(text);
  } catch {
    log.error("common.cpp", 1897, `json parse failed ${text}`);
    return false;
  }
  if (!isObject(j)) return true;
  const has = (/** @type {string} */ k) => j instanceof Map && j.has(k);
  const at = (/** @type {string} */ k) => /** @type {JsonValue} */ (/** @type {Map<string, JsonValue>} */ (j).get(k));
  const str = (/** @type {string} */ k, /** @type {(v: string) => void} */ set) => {
    const v = at(k);
    if (has(k) && typeof v === "string") set(v);
  };
  const int = (/** @type {string} */ k, /** @type {(v: number) => void} */ set) => {
    if (has(k) && isInteger(at(k))) set(toInt(at(k)));
  };
  const flt = (/** @type {string} */ k, /** @type {(v: number) => void} */ set) => {
    if (has(k) && isNumber(at(k))) set(toFloat(at(k)));
  };
  const bool = (/** @type {string} */ k, /** @type {(v: boolean) => void} */ set) => {
    const v = at(k);
    if (has(k) && typeof v === "boolean") set(v);
  };
  str("prompt", (v) => (g.prompt = v));
  str("negative_prompt", (v) => (g.negativePrompt = v));
  str("cache_mode", (v) => (g.cacheMode = v));
  int("clip_skip", (v) => (g.clipSkip = v));
  int("width", (v) => (g.width = v));
  int("height", (v) => (g.height = v));
  int("batch_count", (v) => (g.batchCount = v));
  if (has("seed") && isInteger(at("seed"))) g.seed = toInt64(at("seed"));
  flt("strength", (v) => (g.strength = v));
  flt("control_strength", (v) => (g.controlStrength = v));
  flt("ip_adapter_strength", (v) => (g.ipAdapterStrength = v));
  bool("auto_resize_ref_image", (v) => (g.autoResizeRefImage = v));
  bool("increase_ref_index", (v) => (g.increaseRefIndex = v));
  bool("embed_image_metadata", (v) => (g.embedImageMetadata = v));
  const hires = at("hires");
  if (isObject(hires) && typeof hires.get("enabled") === "boolean") g.hiresEnabled = /** @type {boolean} */ (hires.get("enabled"));

  const sp = at("sample_params");
  if (isObject(sp)) {
    const s = g.sample;
    const v = (/** @type {string} */ k) => /** @type {JsonValue} */ (sp.get(k));
    if (isInteger(v("sample_steps"))) s.steps = toInt(v("sample_steps"));
    if (isNumber(v("eta"))) s.eta = toFloat(v("eta"));
    if (isInteger(v("shifted_timestep"))) s.shiftedTimestep = toInt(v("shifted_timestep"));
    if (isNumber(v("flow_shift"))) s.flowShift = toFloat(v("flow_shift"));
    if (typeof v("extra_sample_args") === "string") g.extraSampleArgs = /** @type {string} */ (v("extra_sample_args"));
    const sigmas = v("custom_sigmas");
    if (Array.isArray(sigmas)) g.customSigmas = sigmas.map(toFloat);
    const method = v("sample_method");
    if (typeof method === "string" && SAMPLE_METHODS.includes(method)) s.method = method;
    const sched = v("scheduler");
    if (typeof sched === "string") s.scheduler = strToScheduler(sched) ?? s.scheduler;
    const guidance = v("guidance");
    if (isObject(guidance)) {
      const gv = (/** @type {string} */ k) => /** @type {JsonValue} */ (guidance.get(k));
      if (isNumber(gv("txt_cfg"))) s.txtCfg = toFloat(gv("txt_cfg"));
      if (isNumber(gv("img_cfg"))) s.imgCfg = toFloat(gv("img_cfg"));
      if (isNumber(gv("distilled_guidance"))) s.distilledGuidance = toFloat(gv("distilled_guidance"));
      const slg = gv("slg");
      if (isObject(slg)) {
        const layers = slg.get("layers");
        if (Array.isArray(layers)) g.skipLayers = layers.map(toInt);
        const sv = (/** @type {string} */ k) => /** @type {JsonValue} */ (slg.get(k));
        if (isNumber(sv("layer_start"))) s.slgStart = toFloat(sv("layer_start"));
        if (isNumber(sv("layer_end"))) s.slgEnd = toFloat(sv("layer_end"));
        if (isNumber(sv("scale"))) s.slgScale = toFloat(sv("scale"));
      }
    }
  }
  const tiling = at("vae_tiling_params");
  if (isObject(tiling) && typeof tiling.get("enabled") === "boolean") g.vaeTiling = /** @type {boolean} */ (tiling.get("enabled"));

  if (has("lora")) {
    const lora = at("lora");
    let ok = Array.isArray(lora);
    if (Array.isArray(lora)) {
      g.loraMap.clear();
      g.highNoiseLoraMap.clear();
      for (const item of lora) {
        if (!isObject(item)) {
          ok = false;
          break;
        }
        const p = valueStr(item, "path", "");
        const resolved = p === "" ? "" : loraResolver ? loraResolver(p) : p;
        if (resolved === "") {
          ok = false;
          break;
        }
        const mult = valueFloat(item, "multiplier", 1);
        const map = valueBool(item, "is_high_noise", false) ? g.highNoiseLoraMap : g.loraMap;
        map.set(resolved, Math.fround((map.get(resolved) ?? 0) + mult));
      }
    }
    if (!ok) {
      log.error("common.cpp", 2096, "invalid lora");
      return false;
    }
  }
  /** @type {[string, number, (img: { width: number, height: number }) => void][]} */
  const imageFields = [
    ["init_image", 2100, (img) => (g.initImage = img)],
    ["end_image", 2104, () => {}],
    ["mask_image", 2116, (img) => (g.maskImage = img)],
    ["control_image", 2120, () => {}],
    ["ip_adapter_image", 2124, () => {}],
  ];
  for (const [key, line, set] of imageFields) {
    if (!has(key) || at(key) === null) continue;
    const v = at(key);
    const img = typeof v === "string" ? decodeBase64Image(v, g.width, g.height, log) : null;
    if (!img) {
      log.error("common.cpp", line, `invalid ${key}`);
      return false;
    }
    set(img);
  }
  for (const [key, line] of /** @type {[string, number][]} */ ([
    ["ref_images", 2108],
    ["control_frames", 2112],
  ])) {
    if (!has(key) || at(key) === null) continue;
    const list = at(key);
    /** @type {{ width: number, height: number }[]} */
    const imgs = [];
    let ok = Array.isArray(list);
    for (const item of Array.isArray(list) ? list : []) {
      const img = typeof item === "string" ? decodeBase64Image(item, g.width, g.height, log) : null;
      if (!img) {
        ok = false;
        break;
      }
      imgs.push(img);
    }
    if (!ok) {
      log.error("common.cpp", line, `invalid ${key}`);
      return false;
    }
    if (key === "ref_images") g.refImages = imgs;
  }
  return true;
}

/**
 * SDGenerationParams::resolve + validate (strict = true for every server API): a negative seed
 * becomes rand(), batch_count is clamped to 1..8 and steps to 1..100, then the checks (an ERROR
 * line each). Returns false when invalid.
 * @param {GenParams} g @param {ServerLogger} log
 */
export function resolveAndValidate(g, log) {
  if (!["", "disabled", "easycache", "ucache", "dbcache", "taylorseer", "cache-dit", "spectrum"].includes(g.cacheMode)) {
    log.error("common.cpp", 2300, `error: invalid cache mode '${g.cacheMode}'`);
    return false;
  }
  if (g.seed < 0n) g.seed = randomSeed();
  g.batchCount = Math.min(8, Math.max(1, g.batchCount));
  g.sample.steps = Math.min(100, Math.max(1, g.sample.steps));
  g.promptWithLora = g.prompt;
  if (g.strength < 0 || g.strength > 1) {
    log.error("common.cpp", 2384, "error: can only work with strength in [0.0, 1.0]\n");
    return false;
  }
  if (g.sample.txtCfg < 0) {
    log.error("common.cpp", 2389, "error: cfg_scale must be positive");
    return false;
  }
  if (g.sample.shiftedTimestep < 0 || g.sample.shiftedTimestep > 1000) {
    log.error("common.cpp", 2427, "error: shifted_timestep must be in range [0, 1000]");
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// the three request builders
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} Runtime
 * @property {CtxParams} ctx
 * @property {GenParams} defaults
 * @property {ServerLogger} log
 * @property {(p: string) => string} loraFullPath  get_lora_full_path (the lora cache; "" if unknown)
 * @property {() => void} refreshLoraCache
 */

/** @typedef {{ ok: true, params: GenParams, img2img: boolean, outputFormat: string, outputCompression: number } | { ok: false, error: string }} Built */

/**
 * build_sdapi_img_gen_request. Type errors throw JsonError (the route answers 500).
 * @param {JsonValue} j @param {Runtime} rt @param {boolean} img2img @returns {Built}
 */
export function buildSdapiRequest(j, rt, img2img) {
  const log = rt.log;
  const prompt = valueStr(j, "prompt", "");
  const negativePrompt = valueStr(j, "negative_prompt", "");
  const width = valueInt(j, "width", 512);
  const height = valueInt(j, "height", 512);
  const steps = valueInt(j, "steps", rt.defaults.sample.steps);
  const cfgScale = valueFloat(j, "cfg_scale", rt.defaults.sample.txtCfg);
  const seed = valueInt64(j, "seed", -1n);
  const batchSize = valueInt(j, "batch_size", 1);
  const clipSkip = valueInt(j, "clip_skip", -1);
  const samplerName = valueStr(j, "sampler_name", "");
  const schedulerName = valueStr(j, "scheduler", "");
  if (width <= 0 || height <= 0) return { ok: false, error: "width and height must be positive" };
  if (prompt === "") return { ok: false, error: "prompt required" };

  const g = cloneGenParams(rt.defaults);
  g.prompt = prompt;
  g.negativePrompt = negativePrompt;
  g.seed = seed;
  g.sample.steps = steps;
  g.batchCount = batchSize;
  g.sample.txtCfg = cfgScale;
  g.width = valueInt(j, "width", -1);
  g.height = valueInt(j, "height", -1);
  if (!img2img && valueBool(j, "enable_hr", false)) {
    g.hiresEnabled = true;
    valueFloat(j, "hr_scale", 2);
    valueInt(j, "hr_resize_x", 0);
    valueInt(j, "hr_resize_y", 0);
    valueInt(j, "hr_steps", 0);
    valueFloat(j, "denoising_strength", 0.7);
    valueStr(j, "hr_upscaler", "Latent");
  }
  const extra = extractExtraArgs(g.prompt);
  g.prompt = extra.text;
  if (extra.extracted !== "" && !fromJsonStr(g, extra.extracted, log, undefined)) return { ok: false, error: "invalid sd_cpp_extra_args" };
  if (clipSkip > 0) g.clipSkip = clipSkip;
  const method = sdapiSampleMethod(samplerName);
  if (method !== null) g.sample.method = method;
  const scheduler = strToScheduler(schedulerName);
  if (scheduler !== null) g.sample.scheduler = scheduler;

  const lora = j instanceof Map ? j.get("lora") : undefined;
  if (Array.isArray(lora)) {
    g.loraMap.clear();
    g.highNoiseLoraMap.clear();
    for (const item of lora) {
      if (!isObject(item)) continue;
      const p = valueStr(item, "path", "");
      const multiplier = valueFloat(item, "multiplier", 1);
      const isHighNoise = valueBool(item, "is_high_noise", false);
      if (p === "") return { ok: false, error: "lora.path required" };
      const full = rt.loraFullPath(p);
      if (full === "") return { ok: false, error: `invalid lora path: ${p}` };
      const map = isHighNoise ? g.highNoiseLoraMap : g.loraMap;
      map.set(full, Math.fround((map.get(full) ?? 0) + multiplier));
    }
  }

  if (img2img) {
    const expectedW = sizeIsSet(g) ? g.width : 0;
    const expectedH = sizeIsSet(g) ? g.height : 0;
    const init = j instanceof Map ? j.get("init_images") : undefined;
    if (Array.isArray(init) && init.length > 0) {
      const img = decodeBase64Image(toStr(init[0]), expectedW, expectedH, log);
      if (img) {
        g.initImage = img;
        setSizeIfUnset(g, img, log);
      }
    }
    const mask = j instanceof Map ? j.get("mask") : undefined;
    if (typeof mask === "string") {
      const img = decodeBase64Image(mask, expectedW, expectedH, log);
      if (img) {
        g.maskImage = img;
        setSizeIfUnset(g, img, log);
      }
      valueInt(j, "inpainting_mask_invert", 0);
    } else {
      g.maskImage = { width: resolvedWidth(g), height: resolvedHeight(g) };
    }
    const denoising = valueFloat(j, "denoising_strength", -1);
    if (denoising >= 0) g.strength = Math.min(denoising, 1);
  }

  const extraImages = j instanceof Map ? j.get("extra_images") : undefined;
  if (Array.isArray(extraImages)) {
    for (const item of extraImages) {
      if (typeof item !== "string") continue;
      const img = decodeBase64Image(item, sizeIsSet(g) ? g.width : 0, sizeIsSet(g) ? g.height : 0, log);
      if (img) {
        setSizeIfUnset(g, img, log);
        g.refImages.push(img);
      }
    }
  }

  if (!resolveAndValidate(g, log)) return { ok: false, error: "invalid params" };
  return { ok: true, params: g, img2img, outputFormat: "png", outputCompression: 100 };
}

/** std::stoi on a prefix: the number, or null where stoi throws. @param {string} s @returns {number | null} */
function stoiOrNull(s) {
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)/.exec(s);
  if (!m) return null;
  const v = Number(m[1]);
  return v < -(2 ** 31) || v >= 2 ** 31 ? null : v;
}

/**
 * assign_output_options: lower-cased format; png and jpeg only (no webp in this build).
 * @param {string} format @param {number} compression
 * @returns {{ ok: true, format: string, compression: number } | { ok: false, error: string }}
 */
export function assignOutputOptions(format, compression) {
  const f = format.replace(/[A-Z]/g, (c) => c.toLowerCase());
  if (f !== "png" && f !== "jpeg") return { ok: false, error: "invalid output_format, must be one of [png, jpeg]" };
  return { ok: true, format: f, compression: Math.min(100, Math.max(0, compression)) };
}

/**
 * build_openai_generation_request (the body is already known not to be empty).
 * @param {JsonValue} j @param {Runtime} rt @returns {Built}
 */
export function buildOpenAiRequest(j, rt) {
  const prompt = valueStr(j, "prompt", "");
  const n = Math.max(1, valueInt(j, "n", 1));
  const size = valueStr(j, "size", "");
  const outputFormat = valueStr(j, "output_format", "png");
  const outputCompression = valueInt(j, "output_compression", 100);
  let width = rt.defaults.width > 0 ? rt.defaults.width : 512;
  let height = rt.defaults.width > 0 ? rt.defaults.height : 512;
  if (size !== "") {
    const pos = size.indexOf("x");
    if (pos >= 0) {
      const w = stoiOrNull(size.slice(0, pos));
      if (w !== null) {
        width = w;
        const h = stoiOrNull(size.slice(pos + 1));
        if (h !== null) height = h;
      }
    }
  }
  if (prompt === "") return { ok: false, error: "prompt required" };
  const g = cloneGenParams(rt.defaults);
  const out = assignOutputOptions(outputFormat, outputCompression);
  if (!out.ok) return out;
  g.prompt = prompt;
  g.width = width;
  g.height = height;
  g.batchCount = n;
  const extra = extractExtraArgs(g.prompt);
  g.prompt = extra.text;
  if (extra.extracted !== "" && !fromJsonStr(g, extra.extracted, rt.log, undefined)) return { ok: false, error: "invalid sd_cpp_extra_args" };
  if (!resolveAndValidate(g, rt.log)) return { ok: false, error: "invalid params" };
  return { ok: true, params: g, img2img: g.initImage !== null, outputFormat: out.format, outputCompression: out.compression };
}

/**
 * parse_img_gen_request (the async API): the whole body is the sdcpp schema.
 * @param {JsonValue} body @param {Runtime} rt @returns {Built}
 */
export function buildSdcppRequest(body, rt) {
  const g = cloneGenParams(rt.defaults);
  rt.refreshLoraCache();
  if (!fromJsonStr(g, dumpJson(body), rt.log, rt.loraFullPath)) return { ok: false, error: "invalid generation parameters" };
  const out = assignOutputOptions(valueStr(body, "output_format", "png"), valueInt(body, "output_compression", 100));
  if (!out.ok) return out;
  if (!resolveAndValidate(g, rt.log)) return { ok: false, error: "invalid generation parameters" };
  return { ok: true, params: g, img2img: g.initImage !== null, outputFormat: out.format, outputCompression: out.compression };
}

// ---------------------------------------------------------------------------------------------
// metadata
// ---------------------------------------------------------------------------------------------

/** std::to_string(float): "%f" of the float. @param {number} x */
export function cFloatString(x) {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  return Math.fround(x).toFixed(6);
}

/** A float field in a json: its double, or null when not finite (nlohmann dumps inf as null). @param {number} x */
const jf = (x) => jfloat32(x);

/**
 * build_sdcpp_image_metadata_json
 * @param {CtxParams} ctx @param {GenParams} g @param {bigint} seed
 */
export function sdcppMetadata(ctx, g, seed) {
  const s = g.sample;
  /** @type {Record<string, JsonValue>} */
  const sampling = {
    steps: s.steps,
    eta: jf(s.eta),
    shifted_timestep: s.shiftedTimestep,
    flow_shift: jf(s.flowShift),
    extra_sample_args: g.extraSampleArgs,
    guidance: {
      txt_cfg: jf(s.txtCfg),
      img_cfg: jf(s.imgCfg),
      distilled_guidance: jf(s.distilledGuidance),
      slg: { scale: jf(s.slgScale), layers: g.skipLayers, start: jf(s.slgStart), end: jf(s.slgEnd) },
    },
    custom_sigmas: g.customSigmas.map(jf),
  };
  if (s.method !== null) sampling.method = s.method;
  if (s.scheduler !== null) sampling.scheduler = s.scheduler;
  /** @type {Record<string, JsonValue>} */
  const models = {};
  for (const [key, p] of /** @type {[string, string][]} */ ([
    ["model", ctx.modelPath],
    ["clip_l", ctx.clipLPath],
    ["clip_g", ctx.clipGPath],
    ["t5xxl", ctx.t5xxlPath],
    ["llm", ctx.llmPath],
    ["llm_vision", ctx.llmVisionPath],
    ["diffusion_model", ctx.diffusionModelPath],
    ["high_noise_diffusion_model", ctx.highNoiseDiffusionModelPath],
    ["uncond_diffusion_model", ctx.uncondDiffusionModelPath],
    ["vae", ctx.vaePath],
    ["taesd", ctx.taesdPath],
    ["control_net", ctx.controlNetPath],
  ])) {
    if (p !== "") models[key] = sdBasename(p);
  }
  /** @type {Record<string, JsonValue>} */
  const root = {
    schema: "sdcpp.image.params/v1",
    mode: "img_gen",
    generator: { name: "stable-diffusion.cpp", version: VERSION_SHORT, commit: COMMIT },
    seed,
    width: resolvedWidth(g),
    height: resolvedHeight(g),
    prompt: { positive: g.prompt, negative: g.negativePrompt },
    sampling,
    models: Object.keys(models).length > 0 ? models : null,
    clip_skip: g.clipSkip,
    strength: jf(g.strength),
    control_strength: jf(g.controlStrength),
    ip_adapter_strength: jf(g.ipAdapterStrength),
    auto_resize_ref_image: g.autoResizeRefImage,
    increase_ref_index: g.increaseRefIndex,
    rng: ctx.rng,
  };
  if (ctx.samplerRng !== null) root.sampler_rng = ctx.samplerRng;
  /** @type {JsonValue[]} */
  const loras = [];
  for (const [p, m] of [...g.loraMap].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) {
    loras.push({ name: sdBasename(p), multiplier: jf(m), is_high_noise: false });
  }
  for (const [p, m] of [...g.highNoiseLoraMap].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) {
    loras.push({ name: sdBasename(p), multiplier: jf(m), is_high_noise: true });
  }
  if (loras.length > 0) root.loras = loras;
  return dumpJson(root);
}

/**
 * get_image_params: the A1111-style infotext sd-server writes into each PNG's tEXt chunk
 * `parameters` and into info.infotexts.
 * @param {CtxParams} ctx @param {GenParams} g @param {bigint} seed
 */
export function imageParams(ctx, g, seed) {
  const s = g.sample;
  let t = `${g.promptWithLora !== "" ? g.promptWithLora : g.prompt}\n`;
  if (g.negativePrompt !== "") t += `Negative prompt: ${g.negativePrompt}\n`;
  t += `Steps: ${s.steps}, `;
  t += `CFG scale: ${cFloatString(s.txtCfg)}, `;
  if (s.slgScale !== 0 && g.skipLayers.length !== 0) {
    t += `SLG scale: ${cFloatString(s.slgScale)}, `;
    t += `Skip layers: [${g.skipLayers.map((l) => `${l}, `).join("")}], `;
    t += `Skip layer start: ${cFloatString(s.slgStart)}, `;
    t += `Skip layer end: ${cFloatString(s.slgEnd)}, `;
  }
  t += `Guidance: ${cFloatString(s.distilledGuidance)}, `;
  t += `Eta: ${cFloatString(s.eta)}, `;
  if (g.extraSampleArgs !== "") t += `Extra sample args: ${g.extraSampleArgs}, `;
  t += `Seed: ${seed}, `;
  t += `Size: ${resolvedWidth(g)}x${resolvedHeight(g)}, `;
  t += `Model: ${sdBasename(ctx.modelPath)}, `;
  t += `RNG: ${ctx.rng}, `;
  if (ctx.samplerRng !== null) t += `Sampler RNG: ${ctx.samplerRng}, `;
  t += `Sampler: ${s.method ?? "NONE"}`;
  if (g.customSigmas.length > 0) t += `, Custom Sigmas: [${g.customSigmas.map((x) => Math.fround(x).toFixed(4)).join(", ")}]`;
  else if (s.scheduler !== null) t += ` ${s.scheduler}`;
  t += ", ";
  for (const te of [ctx.clipLPath, ctx.clipGPath, ctx.t5xxlPath, ctx.llmPath, ctx.llmVisionPath]) {
    if (te !== "") t += `TE: ${sdBasename(te)}, `;
  }
  if (ctx.diffusionModelPath !== "") t += `Unet: ${sdBasename(ctx.diffusionModelPath)}, `;
  if (ctx.uncondDiffusionModelPath !== "") t += `Uncond Unet: ${sdBasename(ctx.uncondDiffusionModelPath)}, `;
  if (ctx.vaePath !== "") t += `VAE: ${sdBasename(ctx.vaePath)}, `;
  if (g.clipSkip !== -1) t += `Clip skip: ${g.clipSkip}, `;
  t += "Version: stable-diffusion.cpp";
  t += `, SDCPP: ${sdcppMetadata(ctx, g, seed)}`;
  return t;
}

/**
 * prepare_info_field + the per-image arrays: the object that goes, dumped, into `info`.
 * @param {CtxParams} ctx @param {GenParams} g @param {boolean} img2img @param {string[]} infotexts
 */
export function infoField(ctx, g, img2img, infotexts) {
  /** @type {Record<string, JsonValue>} */
  const info = {
    prompt: g.prompt,
    seed: g.seed,
    cfg_scale: jf(g.sample.txtCfg),
    width: resolvedWidth(g),
    height: resolvedHeight(g),
    steps: g.sample.steps,
    sampler_name: g.sample.method ?? "NONE",
  };
  if (g.negativePrompt !== "") info.negative_prompt = g.negativePrompt;
  if (g.clipSkip !== -1) info.clip_skip = g.clipSkip;
  if (g.sample.scheduler !== null) info.extra_generation_params = { "Schedule type": g.sample.scheduler };
  if (img2img) info.denoising_strength = jf(g.strength);
  if (ctx.diffusionModelPath !== "") info.sd_model_name = sdBasename(ctx.diffusionModelPath);
  else if (ctx.modelPath !== "") info.sd_model_name = sdBasename(ctx.modelPath);
  if (ctx.vaePath !== "") info.sd_vae_name = sdBasename(ctx.vaePath);
  info.version = "stable-diffusion.cpp";
  info.infotexts = infotexts;
  info.all_prompts = infotexts.map(() => g.prompt);
  info.all_negative_prompts = infotexts.map(() => g.negativePrompt);
  info.all_seeds = infotexts.map((_, i) => BigInt.asIntN(64, g.seed + BigInt(i)));
  return info;
}

/** The display path sd-server reports (model, else diffusion model). @param {CtxParams} ctx */
export function displayModelPath(ctx) {
  return ctx.modelPath !== "" ? ctx.modelPath : ctx.diffusionModelPath;
}

/** std::filesystem::path::stem() @param {string} p */
export function pathStem(p) {
  const base = p.endsWith("/") ? "" : path.posix.basename(p);
  if (base === "." || base === "..") return base;
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

export { JFloat };
