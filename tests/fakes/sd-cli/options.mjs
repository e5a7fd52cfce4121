// @ts-check
/**
 * sd-cli's command line, as stable-diffusion.cpp master-827 parses it (examples/common/common.cpp
 * `parse_options`, examples/cli/main.cpp): three option groups (CLI, Context, Generation), each
 * matched in the order string → int → float → bool → manual. Numbers go through std::stoi /
 * std::stof / std::stoll, which throw (and, uncaught, abort the process) on non-numbers.
 *
 * The table lists every option the real --help prints, so an option the real program accepts is
 * never "unknown" here, even when the double ignores its value.
 */

/** @typedef {"string" | "int" | "float" | "bool" | "manual"} OptionKind */
/**
 * @typedef {object} OptionSpec
 * @property {string} short  e.g. "-m" or ""
 * @property {string} long   e.g. "--model"
 * @property {OptionKind} kind
 * @property {string} key    where the value lands in ParsedArgs.values
 * @property {boolean} [boolValue]  value a bool option stores (default true)
 * @property {number} [arity] manual options: how many values they consume (default 1)
 */

/** @param {string} spec e.g. "-m,--model:model" or "--vae:vae" @param {OptionKind} kind @returns {OptionSpec} */
function opt(spec, kind) {
  const [names = "", keyPart] = spec.split(":");
  const parts = names.split(",");
  const short = parts.length === 2 ? (parts[0] ?? "") : "";
  const long = parts.length === 2 ? (parts[1] ?? "") : (parts[0] ?? "");
  const key = keyPart ?? long.replace(/^-+/, "").replace(/-/g, "_");
  return { short, long, kind, key };
}

/** @param {OptionKind} kind @param {string[]} specs */
const many = (kind, specs) => specs.map((s) => opt(s, kind));

/** @type {OptionSpec[]} */
const CLI_OPTIONS = [
  ...many("string", ["-o,--output:output", "--image", "--metadata-format", "--preview-path", "--imat-out"]),
  ...many("int", ["--preview-interval", "--output-begin-idx"]),
  ...many("bool", [
    "--canny",
    "--convert-name",
    "-v,--verbose:verbose",
    "--color",
    "--taesd-preview-only",
    "--preview-noisy",
    "--metadata-raw",
    "--metadata-brief",
    "--metadata-all",
  ]),
  ...many("manual", ["-M,--mode:mode", "--preview", "-h,--help:help", "--imat-in"]),
];

/** @type {OptionSpec[]} */
const CONTEXT_OPTIONS = [
  ...many("string", [
    "-m,--model:model",
    "--clip_l:clip_l",
    "--clip_g:clip_g",
    "--clip_vision:clip_vision",
    "--t5xxl:t5xxl",
    "--llm:llm",
    "--llm_vision:llm_vision",
    "--qwen2vl:llm",
    "--qwen2vl_vision:llm_vision",
    "--diffusion-model:diffusion_model",
    "--high-noise-diffusion-model",
    "--uncond-diffusion-model",
    "--embeddings-connectors",
    "--vae:vae",
    "--vae-format",
    "--audio-vae",
    "--taesd:taesd",
    "--tae:taesd",
    "--control-net:control_net",
    "--ip-adapter",
    "--motion-module",
    "--embd-dir",
    "--lora-model-dir:lora_model_dir",
    "--hires-upscalers-dir",
    "--tensor-type-rules",
    "--model-args",
    "--photo-maker",
    "--pulid-weights",
    "--upscale-model",
    "--backend",
    "--params-backend",
    "--split-mode",
    "--rpc-servers",
    "--max-vram",
  ]),
  ...many("int", ["-t,--threads:threads"]),
  ...many("bool", [
    "--stream-layers",
    "--eager-load",
    "--auto-fit",
    "--force-sdxl-vae-conv-scale",
    "--offload-to-cpu",
    "--mmap",
    "--control-net-cpu",
    "--clip-on-cpu",
    "--vae-on-cpu",
    "--fa",
    "--diffusion-fa",
    "--diffusion-conv-direct",
    "--vae-conv-direct",
  ]),
  ...many("manual", ["--type", "--rng", "--sampler-rng", "--prediction", "--lora-apply-mode", "--list-devices"]),
];

/** @type {OptionSpec[]} */
const GENERATION_OPTIONS = [
  ...many("string", [
    "-p,--prompt:prompt",
    "-n,--negative-prompt:negative_prompt",
    "--ad-model",
    "--ad-prompt",
    "--ad-negative-prompt",
    "--extra-ad-args",
    "-i,--init-img:init_img",
    "--end-img",
    "--mask:mask",
    "--control-image:control_image",
    "--ip-adapter-image",
    "--control-video",
    "--pm-id-images-dir",
    "--pm-id-embed-path",
    "--pulid-id-embedding",
    "--hires-upscaler",
    "--extra-sample-args",
    "--extra-tiling-args",
    "--ref-image-args",
  ]),
  ...many("int", [
    "-H,--height:height",
    "-W,--width:width",
    "--steps:steps",
    "--high-noise-steps",
    "--clip-skip",
    "-b,--batch-count:batch_count",
    "--qwen-image-layers",
    "--video-frames",
    "--fps",
    "--timestep-shift",
    "--upscale-repeats",
    "--upscale-tile-size",
    "--hires-width",
    "--hires-height",
    "--hires-steps",
    "--hires-upscale-tile-size",
  ]),
  ...many("float", [
    "--cfg-scale:cfg_scale",
    "--img-cfg-scale",
    "--guidance:guidance",
    "--slg-scale",
    "--skip-layer-start",
    "--skip-layer-end",
    "--eta",
    "--flow-shift",
    "--high-noise-cfg-scale",
    "--high-noise-img-cfg-scale",
    "--high-noise-guidance",
    "--high-noise-slg-scale",
    "--high-noise-skip-layer-start",
    "--high-noise-skip-layer-end",
    "--high-noise-eta",
    "--strength:strength",
    "--pm-style-strength",
    "--pulid-id-weight",
    "--control-strength",
    "--ip-adapter-strength",
    "--moe-boundary",
    "--vace-strength",
    "--vae-tile-overlap",
    "--hires-scale",
    "--hires-denoising-strength",
  ]),
  ...many("bool", [
    "--increase-ref-index",
    "--disable-auto-resize-ref-image:auto_resize_ref_image",
    "--circular",
    "--circularx",
    "--circulary",
    "--disable-image-metadata:embed_image_metadata",
    "--vae-tiling",
    "--temporal-tiling",
    "--hires",
  ]),
  ...many("manual", [
    "-s,--seed:seed",
    "--sampling-method:sampling_method",
    "--high-noise-sampling-method",
    "--scheduler:scheduler",
    "--sigmas",
    "--hires-sigmas",
    "--skip-layers",
    "--high-noise-skip-layers",
    "-r,--ref-image:ref_image",
    "--ref-video",
    "--ref-video-audio",
    "--ref-audio",
    "--cache-mode",
    "--cache-option",
    "--scm-mask",
    "--scm-policy",
    "--vae-tile-size",
    "--vae-relative-tile-size",
    "--prompt-file",
    "--negative-prompt-file",
  ]),
];

for (const o of [...CLI_OPTIONS, ...CONTEXT_OPTIONS, ...GENERATION_OPTIONS]) {
  if (o.long === "--help" || o.long === "--list-devices") o.arity = 0;
  if (o.long === "--disable-auto-resize-ref-image" || o.long === "--disable-image-metadata") o.boolValue = false;
}

/** The three groups in the order sd-cli matches (and prints) them. */
export const OPTION_GROUPS = /** @type {const} */ ([
  ["CLI Options", CLI_OPTIONS],
  ["Context Options", CONTEXT_OPTIONS],
  ["Generation Options", GENERATION_OPTIONS],
]);

const KIND_ORDER = ["string", "int", "float", "bool", "manual"];

/** @param {string} arg @returns {OptionSpec | undefined} */
export function findOption(arg) {
  for (const [, group] of OPTION_GROUPS) {
    for (const kind of KIND_ORDER) {
      const hit = group.find(
        (o) => o.kind === kind && ((o.short !== "" && o.short === arg) || (o.long !== "" && o.long === arg)),
      );
      if (hit) return hit;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Enumerations (the lists --help prints) and the names sd.cpp logs for them
// ---------------------------------------------------------------------------------------------

/** CLI name → the name stable-diffusion.cpp prints in "sampling using %s method". */
export const SAMPLERS = new Map([
  ["euler", "Euler"],
  ["euler_a", "Euler A"],
  ["heun", "Heun"],
  ["dpm2", "DPM2"],
  ["dpm++2s_a", "DPM++ (2s)"],
  ["dpm++2m", "DPM++ (2M)"],
  ["dpm++2mv2", "modified DPM++ (2M)"],
  ["ipndm", "iPNDM"],
  ["ipndm_v", "iPNDM_v"],
  ["lcm", "LCM"],
  ["ddim_trailing", 'DDIM "trailing"'],
  ["tcd", "TCD"],
  ["res_multistep", "Res Multistep"],
  ["res_2s", "Res 2s"],
  ["er_sde", "ER-SDE"],
  ["euler_cfg_pp", "Euler CFG++"],
  ["euler_a_cfg_pp", "Euler A CFG++"],
  ["euler_ge", "Euler GE"],
  ["dpm++2m_sde", "DPM++ 2M SDE"],
  ["dpm++2m_sde_bt", "DPM++ 2M SDE BT"],
  ["lms", "LMS"],
]);

export const SCHEDULERS = [
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
];
export const SCHEDULER_ALIASES = new Map([["normal", "discrete"]]);
export const PREVIEWS = ["none", "proj", "tae", "vae"];
export const RNGS = ["std_default", "cuda", "cpu"];
export const PREDICTIONS = ["eps", "v", "edm_v", "sd3_flow", "flux_flow", "sefi_flow"];
export const LORA_APPLY_MODES = ["auto", "immediately", "at_runtime"];
export const MODES = ["img_gen", "adetailer", "vid_gen", "upscale", "convert", "metadata"];
export const WEIGHT_TYPES = [
  "f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1",
  "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K",
  "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "iq1_m",
  "tq1_0", "tq2_0", "mxfp4", "nvfp4",
];

// ---------------------------------------------------------------------------------------------
// std::stoi / std::stof / std::stoll
// ---------------------------------------------------------------------------------------------

/**
 * A C++ exception that nobody catches: the process prints libstdc++'s terminate message and
 * aborts.
 */
export class UncaughtCxxException extends Error {
  /** @param {"std::invalid_argument" | "std::out_of_range"} type @param {string} what */
  constructor(type, what) {
    super(`${type}: ${what}`);
    this.type = type;
    this.what = what;
  }
  /** The exact bytes libstdc++'s verbose terminate handler writes to stderr. */
  terminateMessage() {
    return `terminate called after throwing an instance of '${this.type}'\n  what():  ${this.what}\n`;
  }
}

/** @param {string} s @param {string} fn @param {bigint} min @param {bigint} max @returns {bigint} */
function parseCInteger(s, fn, min, max) {
  const m = /^[ \t\n\v\f\r]*([+-]?)(\d+)/.exec(s);
  if (!m) throw new UncaughtCxxException("std::invalid_argument", fn);
  const value = BigInt(`${m[1] === "-" ? "-" : ""}${m[2]}`);
  if (value < min || value > max) throw new UncaughtCxxException("std::out_of_range", fn);
  return value;
}

/** std::stoi: leading integer prefix, int32 range. @param {string} s */
export function stoi(s) {
  return Number(parseCInteger(s, "stoi", -(2n ** 31n), 2n ** 31n - 1n));
}

/** std::stoll: leading integer prefix, int64 range. @param {string} s */
export function stoll(s) {
  return parseCInteger(s, "stoll", -(2n ** 63n), 2n ** 63n - 1n);
}

const FLT_MAX = 3.4028234663852886e38;
const FLT_MIN = 1.1754943508222875e-38;

/** std::stof (strtof): leading float prefix, float range. @param {string} s */
export function stof(s) {
  const m =
    /^[ \t\n\v\f\r]*([+-]?)(inf(?:inity)?|nan(?:\([0-9a-z_]*\))?|0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?\d+)?|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)/i.exec(
      s,
    );
  if (!m) throw new UncaughtCxxException("std::invalid_argument", "stof");
  const sign = m[1] === "-" ? -1 : 1;
  const body = (m[2] ?? "").toLowerCase();
  /** @type {number} */
  let value;
  if (body.startsWith("inf")) return sign * Infinity;
  if (body.startsWith("nan")) return NaN;
  if (body.startsWith("0x")) {
    const hm = /^0x([0-9a-f]*)\.?([0-9a-f]*)(?:p([+-]?\d+))?$/.exec(body);
    const intPart = hm?.[1] ?? "";
    const frac = hm?.[2] ?? "";
    const exp = Number(hm?.[3] ?? "0");
    value = (parseInt(intPart || "0", 16) + (frac ? parseInt(frac, 16) / 16 ** frac.length : 0)) * 2 ** exp;
  } else {
    value = Number(body);
  }
  const abs = Math.abs(value);
  const hasNonZeroDigit = /[1-9a-f]/.test(body.replace(/^0x/, "").replace(/[ep][+-]?\d+$/, ""));
  if (abs > FLT_MAX || (hasNonZeroDigit && abs < FLT_MIN)) {
    throw new UncaughtCxxException("std::out_of_range", "stof");
  }
  return sign * value;
}

// ---------------------------------------------------------------------------------------------
// The parser
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} ErrorLine
 * @property {string} file
 * @property {number} line
 * @property {string} msg
 * @property {boolean} [raw]  printed with fprintf(stderr), without the log tag
 */

/**
 * @typedef {object} ParsedArgs
 * @property {Record<string, string>} strings
 * @property {Record<string, number>} ints
 * @property {Record<string, number>} floats
 * @property {Record<string, boolean>} bools
 * @property {Record<string, string>} manual   last value of each manual option (seed kept as text)
 * @property {bigint | undefined} seed
 * @property {string[]} refImages
 * @property {Set<string>} seen   keys given on the command line
 */

/**
 * What parsing decided. "usage-exit" prints the error lines, then the usage, and exits with
 * `code`; "error-exit" prints the error lines and exits 1 without usage; "abort" is an uncaught
 * C++ exception; "list-devices" prints the device list and exits 0.
 * @typedef {{ kind: "ok", args: ParsedArgs }
 *   | { kind: "usage-exit", errors: ErrorLine[], code: number }
 *   | { kind: "error-exit", errors: ErrorLine[] }
 *   | { kind: "abort", exception: UncaughtCxxException }
 *   | { kind: "list-devices" }} ParseResult
 */

const COMMON = "common.cpp";

/**
 * Validation of a manual option's value. Returns the error lines (empty when valid), or null
 * when the value is valid.
 * @param {string} long @param {string} value @returns {ErrorLine[] | null}
 */
function checkManualValue(long, value) {
  /** @param {string} file @param {number} line @param {string} msg @returns {ErrorLine[]} */
  const err = (file, line, msg) => [{ file, line, msg }];
  switch (long) {
    case "--sampling-method":
      return SAMPLERS.has(value) ? null : err(COMMON, 1258, `error: invalid sample method ${value}`);
    case "--high-noise-sampling-method":
      return SAMPLERS.has(value) ? null : err(COMMON, 1272, `error: invalid high noise sample method ${value}`);
    case "--scheduler":
      return SCHEDULERS.includes(value) || SCHEDULER_ALIASES.has(value)
        ? null
        : err(COMMON, 1286, `error: invalid scheduler ${value}`);
    case "--preview":
      return PREVIEWS.includes(value) ? null : err("main.cpp", 247, `error: preview method ${value}`);
    case "--type":
      return WEIGHT_TYPES.includes(value) ? null : err(COMMON, 506, `error: invalid weight format ${value}`);
    case "--rng":
      return RNGS.includes(value) ? null : err(COMMON, 519, `error: invalid rng type ${value}`);
    case "--sampler-rng":
      return RNGS.includes(value) ? null : err(COMMON, 532, `error: invalid sampler rng type ${value}`);
    case "--prediction":
      return PREDICTIONS.includes(value) ? null : err(COMMON, 545, `error: invalid prediction type ${value}`);
    case "--lora-apply-mode":
      return LORA_APPLY_MODES.includes(value) ? null : err(COMMON, 558, `error: invalid lora apply model ${value}`);
    case "--skip-layers":
    case "--high-noise-skip-layers":
      return value.startsWith("[") && value.endsWith("]") ? null : [];
    case "--scm-policy":
      return value === "dynamic" || value === "static"
        ? null
        : [{ file: "", line: 0, raw: true, msg: `error: invalid scm policy '${value}', must be 'dynamic' or 'static'\n` }];
    case "--cache-mode":
      return ["easycache", "ucache", "dbcache", "taylorseer", "cache-dit", "spectrum"].includes(value)
        ? null
        : [
            {
              file: "",
              line: 0,
              raw: true,
              msg: `error: invalid cache mode '${value}', must be 'easycache', 'ucache', 'dbcache', 'taylorseer', 'cache-dit', or 'spectrum'\n`,
            },
          ];
    default:
      return null;
  }
}

/**
 * Parse argv (without argv[0]) like sd-cli's parse_options. Does not check files or semantic
 * constraints: see `validateArgs`.
 * @param {string[]} argv @returns {ParseResult}
 */
export function parseArgs(argv) {
  /** @type {ParsedArgs} */
  const args = {
    strings: {},
    ints: {},
    floats: {},
    bools: {},
    manual: {},
    seed: undefined,
    refImages: [],
    seen: new Set(),
  };
  /** @param {string} arg @returns {ParseResult} */
  const invalidParameter = (arg, /** @type {ErrorLine[]} */ before = []) => ({
    kind: "usage-exit",
    code: 1,
    errors: [...before, { file: COMMON, line: 320, msg: `error: invalid parameter for argument: ${arg}` }],
  });

  try {
    for (let i = 0; i < argv.length; i++) {
      const arg = /** @type {string} */ (argv[i]);
      const o = findOption(arg);
      if (!o) {
        return { kind: "usage-exit", code: 1, errors: [{ file: COMMON, line: 325, msg: `error: unknown argument: ${arg}` }] };
      }
      if (o.kind === "bool") {
        args.bools[o.key] = o.boolValue ?? true;
        args.seen.add(o.key);
        continue;
      }
      if (o.kind === "manual" && o.arity === 0) {
        if (o.long === "--help") return { kind: "usage-exit", code: 0, errors: [] };
        return { kind: "list-devices" };
      }
      if (i + 1 >= argv.length) return invalidParameter(arg);
      const value = /** @type {string} */ (argv[++i]);
      args.seen.add(o.key);
      switch (o.kind) {
        case "string":
          args.strings[o.key] = value;
          break;
        case "int":
          args.ints[o.key] = stoi(value);
          break;
        case "float":
          args.floats[o.key] = stof(value);
          break;
        case "manual": {
          if (o.long === "--mode" && !MODES.includes(value)) {
            return {
              kind: "error-exit",
              errors: [
                {
                  file: "main.cpp",
                  line: 223,
                  msg: `error: invalid mode ${value}, must be one of [${MODES.join(", ")}]\n`,
                },
              ],
            };
          }
          if (o.long === "--seed") {
            args.seed = stoll(value);
          }
          const problem = checkManualValue(o.long, value);
          if (problem) return invalidParameter(arg, problem);
          if (o.long === "--ref-image") args.refImages.push(value);
          args.manual[o.key] = value;
          break;
        }
      }
    }
  } catch (err) {
    if (err instanceof UncaughtCxxException) return { kind: "abort", exception: err };
    throw err;
  }
  return { kind: "ok", args };
}

/**
 * A fallback usage listing (when the captured --help text is not available): the option names
 * in sd-cli's layout, without the descriptions.
 * @param {string} versionLine @param {string} argv0
 */
export function fallbackUsage(versionLine, argv0) {
  let out = `${versionLine}\nUsage: ${argv0} [options]\n`;
  for (const [title, group] of OPTION_GROUPS) {
    out += `\n${title}:\n`;
    for (const o of group) {
      const hint = { string: " <string>", int: " <int>", float: " <float>", bool: "", manual: "" }[o.kind];
      out += `  ${[o.short, o.long].filter(Boolean).join(", ")}${hint}\n`;
    }
  }
  return out;
}
