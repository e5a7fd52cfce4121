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

/**
 * The four "weight type stat" lines sd.cpp logs at load (stable-diffusion.cpp:959-962): all
 * tensors, then the conditioner's, the diffusion model's and the VAE's, each by weight type.
 * @param {{ info(file: string, line: number, msg: string): void }} log
 * @param {{ te: { tensors: number }, diffusion: { tensors: number }, vaeFull: { tensors: number } }} profile
 * @param {{ te: string, diffusion: string, vae: string }} types
 */
export function logWeightTypeStats(log, profile, types) {
  /** @type {Map<string, number>} */
  const total = new Map();
  for (const [t, n] of /** @type {[string, number][]} */ ([
    [types.te, profile.te.tensors],
    [types.diffusion, profile.diffusion.tensors],
    [types.vae, profile.vaeFull.tensors],
  ])) {
    total.set(t, (total.get(t) ?? 0) + n);
  }
  const line = (/** @type {string} */ label, /** @type {Map<string, number>} */ stat) => `${label.padEnd(34)}${wtypeStat(stat)}`;
  log.info("stable-diffusion.cpp", 959, line("Weight type stat:", total));
  log.info("stable-diffusion.cpp", 960, line("Conditioner weight type stat:", new Map([[types.te, profile.te.tensors]])));
  log.info("stable-diffusion.cpp", 961, line("Diffusion model weight type stat:", new Map([[types.diffusion, profile.diffusion.tensors]])));
  log.info("stable-diffusion.cpp", 962, line("VAE weight type stat:", new Map([[types.vae, profile.vaeFull.tensors]])));
}

/**
 * VRAM one generation needs on the simulated card (tests/fakes/fake-gpu.mjs), in MiB: weights
 * plus compute buffers, as one peak. Picked to match issue 15's figures (SD 1.5 at 512x512 about
 * 3000 MiB, SDXL at 1024x1024 about 7000 MiB), not measured; the pixel term stands for the
 * UNet's and the VAE decoder's compute buffers, which grow with the image:
 *
 *   need = baseMiB + perMegapixelMiB × width × height / 2^20      (rounded up)
 *
 *   kind         base   per Mpx   512x512   768x768   1024x1024
 *   SD 1.x       2200     3200      3000      4000       5400
 *   SD 2.x       2600     3200      3400      4400       5800
 *   SDXL         5200     1800      5650      6213       7000
 *   SD3.x       17000     2400     17600     18350      19400
 *   Flux        13000     2400     13600     14350      15400
 *   Z-Image      6500     2400      7100      7850       8900
 *   Qwen Image  21000     2800     21700     22575      23800
 *
 * With --vae-tiling (sd-server: vae_tiling_params.enabled) the pixel term stops growing past
 * 512x512: tiles have a fixed size. The batch count changes nothing: sd.cpp samples and decodes
 * the images of a batch one after the other. Weight types (q8_0, q4_K) and --offload-to-cpu are
 * not taken into account: force a need with FAKE_SD_VRAM_MIB (vramNeedFromEnv).
 */
export const VRAM_NEEDS = Object.freeze({
  "SD 1.x": Object.freeze({ baseMiB: 2200, perMegapixelMiB: 3200 }),
  "SD 2.x": Object.freeze({ baseMiB: 2600, perMegapixelMiB: 3200 }),
  SDXL: Object.freeze({ baseMiB: 5200, perMegapixelMiB: 1800 }),
  "SD3.x": Object.freeze({ baseMiB: 17000, perMegapixelMiB: 2400 }),
  Flux: Object.freeze({ baseMiB: 13000, perMegapixelMiB: 2400 }),
  "Z-Image": Object.freeze({ baseMiB: 6500, perMegapixelMiB: 2400 }),
  "Qwen Image": Object.freeze({ baseMiB: 21000, perMegapixelMiB: 2800 }),
});

/**
 * The need of one generation (see VRAM_NEEDS). `version` is the profile's ("SD 1.x", "SDXL"...);
 * an unknown one is taken as SD 1.x.
 * @param {{ version: string, width: number, height: number, vaeTiling?: boolean }} shape
 */
export function vramNeedMiB(shape) {
  const row = /** @type {Record<string, { baseMiB: number, perMegapixelMiB: number }>} */ (VRAM_NEEDS)[shape.version] ?? VRAM_NEEDS["SD 1.x"];
  let megapixels = (shape.width * shape.height) / 2 ** 20;
  if (shape.vaeTiling) megapixels = Math.min(megapixels, 0.25);
  return Math.ceil(row.baseMiB + row.perMegapixelMiB * megapixels);
}

/**
 * FAKE_SD_VRAM_MIB: a need forced by the test instead of the table. Either one number for every
 * shape ("9000"), or a list of `WxH=MiB` entries with an optional `*=MiB` for the rest
 * ("1024x1024=9000,*=3000"; the size is the aligned one the double generates). Returns
 * undefined when the knob does not decide for this size.
 * @param {string | undefined} raw @param {number} width @param {number} height @returns {number | undefined}
 */
export function vramNeedFromEnv(raw, width, height) {
  if (raw === undefined || raw.trim() === "") return undefined;
  const single = Number(raw);
  if (Number.isFinite(single) && single >= 0) return Math.ceil(single);
  let fallback;
  for (const entry of raw.split(",")) {
    const m = /^\s*(\*|(\d+)x(\d+))\s*=\s*(\d+(?:\.\d+)?)\s*$/.exec(entry);
    if (!m) continue;
    const mib = Math.ceil(Number(m[4]));
    if (m[1] === "*") fallback = mib;
    else if (Number(m[2]) === width && Number(m[3]) === height) return mib;
  }
  return fallback;
}
