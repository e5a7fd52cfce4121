/**
 * The enum values sd-cli accepts (master-827 `--help`). An unknown value makes sd-cli
 * print its usage and exit 1 after the model may already be loading, so we reject it
 * up front with a 400 instead.
 */

export const samplingMethods = [
  "euler",
  "euler_a",
  "heun",
  "dpm2",
  "dpm++2s_a",
  "dpm++2m",
  "dpm++2mv2",
  "ipndm",
  "ipndm_v",
  "lcm",
  "ddim_trailing",
  "tcd",
  "res_multistep",
  "res_2s",
  "er_sde",
  "euler_cfg_pp",
  "euler_a_cfg_pp",
  "euler_ge",
  "dpm++2m_sde",
  "dpm++2m_sde_bt",
  "lms",
] as const;
export type SamplingMethod = (typeof samplingMethods)[number];

export const schedulers = [
  "discrete",
  "karras",
  "exponential",
  "ays",
  "gits",
  "sgm_uniform",
  "simple",
  "smoothstep",
  "kl_optimal",
  "lcm",
  "bong_tangent",
  "ltx2",
  "logit_normal",
  "flux2",
  "flux",
  "beta",
] as const;
export type Scheduler = (typeof schedulers)[number];

/**
 * `--preview` methods that write a file. `proj` is a cheap latent projection (latent
 * resolution), `vae` decodes a full-size image every step (slow), `tae` needs a TAESD file.
 */
export const previewModes = ["proj", "tae", "vae"] as const;
export type PreviewMode = (typeof previewModes)[number];
