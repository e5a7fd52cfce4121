// @ts-check
/**
 * sd-server's command line (examples/server/main.cpp parse_args → common.cpp parse_options):
 * three groups matched in order, Svr → Context → Default Generation, each kind in the order
 * string → int → float → bool → manual. The Context and Generation groups are the ones sd-cli
 * has (the two --help texts are identical there), so their tables come from the sd-cli
 * double; sd-cli's own group (-o, --preview, -M, ...) does not exist here: `--preview` is an
 * unknown argument (fixtures/sd-server/serve-preview).
 *
 * Line numbers are the ones of stable-diffusion.cpp 97d29908 (master-827).
 */
import fs from "node:fs";
import {
  OPTION_GROUPS,
  SAMPLERS,
  SCHEDULERS,
  SCHEDULER_ALIASES,
  RNGS,
  PREDICTIONS,
  LORA_APPLY_MODES,
  WEIGHT_TYPES,
  UncaughtCxxException,
  stoi,
  stof,
  stoll,
} from "../sd-cli/options.mjs";

/** @typedef {import("../sd-cli/options.mjs").OptionSpec} OptionSpec */
/** @typedef {import("../sd-cli/options.mjs").ErrorLine} ErrorLine */

/** @param {string} short @param {string} long @param {OptionSpec["kind"]} kind @param {string} key @returns {OptionSpec} */
const o = (short, long, kind, key) => ({ short, long, kind, key });

/** SDSvrParams::get_options (runtime.cpp) */
export const SVR_OPTIONS = [
  o("-l", "--listen-ip", "string", "listen_ip"),
  o("", "--serve-html-path", "string", "serve_html_path"),
  o("", "--listen-port", "int", "listen_port"),
  o("-v", "--verbose", "bool", "verbose"),
  o("", "--color", "bool", "color"),
  { ...o("-h", "--help", "manual", "help"), arity: 0 },
];

const CONTEXT_OPTIONS = /** @type {OptionSpec[]} */ (OPTION_GROUPS[1][1]);
const GENERATION_OPTIONS = /** @type {OptionSpec[]} */ (OPTION_GROUPS[2][1]);
export const SERVER_OPTION_GROUPS = /** @type {const} */ ([
  ["Svr Options", SVR_OPTIONS],
  ["Context Options", CONTEXT_OPTIONS],
  ["Default Generation Options", GENERATION_OPTIONS],
]);

const KIND_ORDER = ["string", "int", "float", "bool", "manual"];

/** @param {string} arg @returns {OptionSpec | undefined} */
function findOption(arg) {
  for (const [, group] of SERVER_OPTION_GROUPS) {
    for (const kind of KIND_ORDER) {
      const hit = group.find((x) => x.kind === kind && ((x.short !== "" && x.short === arg) || (x.long !== "" && x.long === arg)));
      if (hit) return hit;
    }
  }
  return undefined;
}

const COMMON = "common.cpp";

/** A manual option's value check: the error lines, or null when valid. @param {string} long @param {string} value @returns {ErrorLine[] | null} */
function checkManualValue(long, value) {
  /** @param {number} line @param {string} msg @returns {ErrorLine[]} */
  const err = (line, msg) => [{ file: COMMON, line, msg }];
  switch (long) {
    case "--sampling-method":
      return SAMPLERS.has(value) ? null : err(1258, `error: invalid sample method ${value}`);
    case "--high-noise-sampling-method":
      return SAMPLERS.has(value) ? null : err(1272, `error: invalid high noise sample method ${value}`);
    case "--scheduler":
      return SCHEDULERS.includes(value) || SCHEDULER_ALIASES.has(value) ? null : err(1286, `error: invalid scheduler ${value}`);
    case "--type":
      return WEIGHT_TYPES.includes(value) ? null : err(582, `error: invalid weight format ${value}`);
    case "--rng":
      return RNGS.includes(value) ? null : err(596, `error: invalid rng type ${value}`);
    case "--sampler-rng":
      return RNGS.includes(value) ? null : err(610, `error: invalid sampler rng type ${value}`);
    case "--prediction":
      return PREDICTIONS.includes(value) ? null : err(624, `error: invalid prediction type ${value}`);
    case "--lora-apply-mode":
      return LORA_APPLY_MODES.includes(value) ? null : err(638, `error: invalid lora apply model ${value}`);
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
 * @typedef {object} ServerArgs
 * @property {Record<string, string>} strings
 * @property {Record<string, number>} ints
 * @property {Record<string, number>} floats
 * @property {Record<string, boolean>} bools
 * @property {Record<string, string>} manual
 * @property {bigint | undefined} seed
 */

/**
 * @typedef {{ kind: "ok", args: ServerArgs }
 *   | { kind: "usage-exit", errors: ErrorLine[], code: number }
 *   | { kind: "abort", exception: UncaughtCxxException }
 *   | { kind: "list-devices" }} ParseResult
 */

/** parse_options over the three groups. @param {string[]} argv without argv[0] @returns {ParseResult} */
export function parseServerArgs(argv) {
  /** @type {ServerArgs} */
  const args = { strings: {}, ints: {}, floats: {}, bools: {}, manual: {}, seed: undefined };
  try {
    for (let i = 0; i < argv.length; i++) {
      const arg = /** @type {string} */ (argv[i]);
      const opt = findOption(arg);
      if (!opt) return { kind: "usage-exit", code: 1, errors: [{ file: COMMON, line: 325, msg: `error: unknown argument: ${arg}` }] };
      if (opt.kind === "bool") {
        args.bools[opt.key] = opt.boolValue ?? true;
        continue;
      }
      if (opt.kind === "manual" && opt.arity === 0) {
        if (opt.long === "--help") return { kind: "usage-exit", code: 0, errors: [] };
        return { kind: "list-devices" };
      }
      if (i + 1 >= argv.length) {
        return { kind: "usage-exit", code: 1, errors: [{ file: COMMON, line: 320, msg: `error: invalid parameter for argument: ${arg}` }] };
      }
      const value = /** @type {string} */ (argv[++i]);
      switch (opt.kind) {
        case "string":
          args.strings[opt.key] = value;
          break;
        case "int":
          args.ints[opt.key] = stoi(value);
          break;
        case "float":
          args.floats[opt.key] = stof(value);
          break;
        case "manual": {
          if (opt.long === "--seed") args.seed = stoll(value);
          const problem = checkManualValue(opt.long, value);
          if (problem) {
            return {
              kind: "usage-exit",
              code: 1,
              errors: [...problem, { file: COMMON, line: 320, msg: `error: invalid parameter for argument: ${arg}` }],
            };
          }
          args.manual[opt.key] = value;
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
 * The semantic checks of parse_args after parse_options: SDSvrParams::validate (runtime.cpp),
 * SDContextParams::validate(IMG_GEN) and SDGenerationParams::validate(IMG_GEN) (common.cpp).
 * Each failure is one ERROR line; the caller prints the usage and exits 1.
 * @param {ServerArgs} a @returns {ErrorLine[]}
 */
export function validateServerArgs(a) {
  const S = a.strings;
  const listenIp = S.listen_ip ?? "127.0.0.1";
  const port = a.ints.listen_port ?? 1234;
  if (listenIp === "") return [{ file: "runtime.cpp", line: 220, msg: "error: the following arguments are required: listen_ip" }];
  if (port < 0 || port > 65535) return [{ file: "runtime.cpp", line: 225, msg: "error: listen_port should be in the range [0, 65535]" }];
  const html = S.serve_html_path ?? "";
  if (html !== "" && !fs.existsSync(html)) {
    return [{ file: "runtime.cpp", line: 230, msg: `error: serve_html_path file does not exist: ${html}` }];
  }
  if ((S.model ?? "") === "" && (S.diffusion_model ?? "") === "") {
    return [{ file: COMMON, line: 742, msg: "error: the following arguments are required: model_path/diffusion_model\n" }];
  }
  const vaeFormat = S.vae_format ?? "auto";
  if (!["auto", "flux", "sd3", "flux2", "wan"].includes(vaeFormat)) {
    return [{ file: COMMON, line: 754, msg: "error: vae_format must be 'auto', 'flux', 'sd3', 'flux2', or 'wan'" }];
  }
  if ((a.ints.batch_count ?? 1) <= 0) return [{ file: COMMON, line: 2369, msg: "error: batch_count must be greater than 0" }];
  if ((a.ints.steps ?? 20) <= 0) return [{ file: COMMON, line: 2379, msg: "error: the sample_steps must be greater than 0\n" }];
  const strength = a.floats.strength ?? 0.75;
  if (strength < 0 || strength > 1) return [{ file: COMMON, line: 2384, msg: "error: can only work with strength in [0.0, 1.0]\n" }];
  if ((a.floats.cfg_scale ?? 7) < 0) return [{ file: COMMON, line: 2389, msg: "error: cfg_scale must be positive" }];
  return [];
}

/**
 * print_usage without the captured text: the option names in sd-server's layout.
 * @param {string} versionLine @param {string} argv0
 */
export function fallbackUsage(versionLine, argv0) {
  let text = `${versionLine}\nUsage: ${argv0} [options]\n`;
  for (const [title, group] of SERVER_OPTION_GROUPS) {
    text += `\n${title}:\n`;
    for (const x of group) {
      const hint = { string: " <string>", int: " <int>", float: " <float>", bool: "", manual: "" }[x.kind];
      text += `  ${[x.short, x.long].filter(Boolean).join(", ")}${hint}\n`;
    }
  }
  return text;
}
