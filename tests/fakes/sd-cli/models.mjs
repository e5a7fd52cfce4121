// @ts-check
/**
 * What the double pretends each kind of model is. The real program reads the tensors to find the
 * model version; the double guesses it from the file names (any file works as a "model"):
 *
 *   -m ...xl...        → SDXL        -m ...sd3...  → SD3.x       -m ...flux... → Flux
 *   -m ...sd2/v2-...   → SD 2.x      -m anything else → SD 1.x (the captured fixture run)
 *   --diffusion-model  → Flux, or SD3.x / Z-Image / Qwen Image when the name says so
 *
 * The SD 1.x numbers are the ones the real run printed (fixtures/sd-cli/gen-basic.stdout); the
 * others are plausible values in the same format.
 */
import path from "node:path";

/**
 * @typedef {object} Stage
 * @property {string} desc       runner name sd.cpp uses in errors ("unet", "clip", "vae")
 * @property {number} tensors    tensors loaded by the lazy loader (N in the `#` bar)
 * @property {number} mb         size in MB
 */

/**
 * @typedef {object} Profile
 * @property {string} version            as in "Version: %s "
 * @property {Stage} te                  text encoder(s), loaded before conditioning
 * @property {Stage} diffusion           UNet / DiT, loaded after "generating image: 1/N"
 * @property {Stage} vaeDecoder          VAE decoder only (txt2img)
 * @property {Stage} vaeFull             VAE encoder + decoder (img2img)
 * @property {number} totalMB            "total params memory size"
 * @property {number} spatialMultiple    vae scale factor x diffusion model down factor
 * @property {string} defaultSampler
 * @property {string} defaultScheduler
 * @property {string} predictionLine     "running in ... mode"
 * @property {boolean} flow
 */

/** @satisfies {Record<string, Profile>} */
export const PROFILES = {
  "SD 1.x": {
    version: "SD 1.x",
    te: { desc: "clip", tensors: 196, mb: 235.06 },
    diffusion: { desc: "unet", tensors: 686, mb: 1640.25 },
    vaeDecoder: { desc: "vae", tensors: 140, mb: 94.06 },
    vaeFull: { desc: "vae", tensors: 248, mb: 159.68 },
    totalMB: 2035.0,
    spatialMultiple: 64,
    defaultSampler: "euler_a",
    defaultScheduler: "discrete",
    predictionLine: "running in eps-prediction mode",
    flow: false,
  },
  "SD 2.x": {
    version: "SD 2.x",
    te: { desc: "clip", tensors: 372, mb: 680.88 },
    diffusion: { desc: "unet", tensors: 686, mb: 1650.66 },
    vaeDecoder: { desc: "vae", tensors: 140, mb: 94.06 },
    vaeFull: { desc: "vae", tensors: 248, mb: 159.68 },
    totalMB: 2491.22,
    spatialMultiple: 64,
    defaultSampler: "euler_a",
    defaultScheduler: "discrete",
    predictionLine: "running in v-prediction mode",
    flow: false,
  },
  SDXL: {
    version: "SDXL",
    te: { desc: "clip", tensors: 713, mb: 1559.57 },
    diffusion: { desc: "unet", tensors: 1680, mb: 4897.05 },
    vaeDecoder: { desc: "vae", tensors: 140, mb: 94.06 },
    vaeFull: { desc: "vae", tensors: 248, mb: 159.68 },
    totalMB: 6616.3,
    spatialMultiple: 32,
    defaultSampler: "euler_a",
    defaultScheduler: "discrete",
    predictionLine: "running in eps-prediction mode",
    flow: false,
  },
  "SD3.x": {
    version: "SD3.x",
    te: { desc: "clip", tensors: 932, mb: 10508.41 },
    diffusion: { desc: "mmdit", tensors: 1167, mb: 15462.97 },
    vaeDecoder: { desc: "vae", tensors: 138, mb: 94.58 },
    vaeFull: { desc: "vae", tensors: 244, mb: 159.87 },
    totalMB: 26131.25,
    spatialMultiple: 16,
    defaultSampler: "euler",
    defaultScheduler: "discrete",
    predictionLine: "running in FLOW mode",
    flow: true,
  },
  Flux: {
    version: "Flux",
    te: { desc: "clip", tensors: 415, mb: 9311.43 },
    diffusion: { desc: "flux", tensors: 780, mb: 12068.09 },
    vaeDecoder: { desc: "vae", tensors: 138, mb: 94.58 },
    vaeFull: { desc: "vae", tensors: 244, mb: 159.87 },
    totalMB: 21539.39,
    spatialMultiple: 16,
    defaultSampler: "euler",
    defaultScheduler: "discrete",
    predictionLine: "running in Flux FLOW mode",
    flow: true,
  },
  "Z-Image": {
    version: "Z-Image",
    te: { desc: "llm", tensors: 398, mb: 4118.02 },
    diffusion: { desc: "z_image", tensors: 453, mb: 5638.16 },
    vaeDecoder: { desc: "vae", tensors: 138, mb: 94.58 },
    vaeFull: { desc: "vae", tensors: 244, mb: 159.87 },
    totalMB: 9916.05,
    spatialMultiple: 16,
    defaultSampler: "euler",
    defaultScheduler: "discrete",
    predictionLine: "running in FLOW mode",
    flow: true,
  },
  "Qwen Image": {
    version: "Qwen Image",
    te: { desc: "llm", tensors: 729, mb: 7826.14 },
    diffusion: { desc: "qwen_image", tensors: 1933, mb: 20429.57 },
    vaeDecoder: { desc: "vae", tensors: 108, mb: 242.03 },
    vaeFull: { desc: "vae", tensors: 194, mb: 242.03 },
    totalMB: 28497.74,
    spatialMultiple: 16,
    defaultSampler: "euler",
    defaultScheduler: "discrete",
    predictionLine: "running in FLOW mode",
    flow: true,
  },
};

/**
 * @param {{ model?: string, diffusionModel?: string }} files @returns {Profile}
 */
export function detectProfile(files) {
  if (files.model) {
    const name = path.basename(files.model).toLowerCase();
    if (/sd3/.test(name)) return PROFILES["SD3.x"];
    if (/flux/.test(name)) return PROFILES.Flux;
    if (/xl/.test(name)) return PROFILES.SDXL;
    if (/sd2|v2-|sd_2/.test(name)) return PROFILES["SD 2.x"];
    return PROFILES["SD 1.x"];
  }
  const name = path.basename(files.diffusionModel ?? "").toLowerCase();
  if (/sd3/.test(name)) return PROFILES["SD3.x"];
  if (/z[-_]?image/.test(name)) return PROFILES["Z-Image"];
  if (/qwen/.test(name)) return PROFILES["Qwen Image"];
  return PROFILES.Flux;
}

/** "load %s using %s format" (model_loader.cpp) @param {string} file */
export function fileFormat(file) {
  const ext = path.extname(file).toLowerCase();
  if (ext === ".gguf") return "gguf";
  if (ext === ".ckpt" || ext === ".pt" || ext === ".pth") return "checkpoint";
  return "safetensors";
}

/** The weight type a file name suggests (q8_0, q4_K...), f16 otherwise. @param {string | undefined} file */
export function weightTypeOf(file) {
  const m = /(q[2-8]_[0-9k]|bf16|f32|fp8|nvfp4)/i.exec(path.basename(file ?? ""));
  if (!m) return "f16";
  const t = (m[1] ?? "f16").toLowerCase();
  return t.endsWith("_k") ? `${t.slice(0, -1)}K` : t;
}

/**
 * One "... weight type stat:" value: `%8s: %-5d` per type, joined with "|".
 * @param {Map<string, number>} stat
 */
export function wtypeStat(stat) {
  return [...stat].map(([type, count]) => `${type.padStart(8)}: ${String(count).padEnd(5)}`).join("|");
}
