// @ts-check
/**
 * How long each phase of the fake sd-server takes. By default everything is short (tests run
 * fast). FAKE_SD_REAL_TIMING=<scale> replays the costs of the real capture
 * (fixtures/sd-server/serve-txt2img-twice, SD 1.x on a 2-vCPU CPU build) multiplied by scale:
 * a fresh server's first 64x64 4-step request then takes ~10.7 s x scale (weights load lazily)
 * and the next ones ~4.1 s x scale. The per-phase knobs override either set of defaults.
 */

/**
 * @typedef {object} Timing  milliseconds
 * @property {number} listenMs        spawn → `listening on` (never less than Node's own start-up)
 * @property {{ te: number, diffusion: number, vae: number, eager: number }} load  lazy tensor loads
 * @property {number} condMs          get_learned_condition compute
 * @property {number} stepMs          one sampling step
 * @property {number} decodeMs        one VAE decode (or encode)
 * @property {{ cond: number, step: number, decode: number }} warmup  extra on the first use of each
 * @property {number} exitMs          SIGTERM/SIGINT to death while the weights are resident
 */

/** The capture, at scale 1 (see fixtures/sd-server/README.md and the .timeline.jsonl files). */
const CAPTURED = {
  listenMs: 282, // weight-type lines at ~35 ms, `using VAE` at ~280 ms, `listening on` at ~282 ms
  load: { te: 610, diffusion: 4300, vae: 200, eager: 4000 },
  condMs: 370, // 0.37 s on request 2; request 1: 1.14 s = 0.61 s load + 0.53 s
  stepMs: 750, // request 2: 3.01 s for 4 steps
  decodeMs: 700, // request 2: 0.70 s
  warmup: { cond: 160, step: 1100, decode: 230 }, // request 1: sampling 8.40 s = 4.30 s load + 4.10 s, decode 1.13 s = 0.20 s load + 0.93 s
  exitMs: 120, // "exited 100 to 140 ms after the signal" with ~2 GB resident
};

const FAST = {
  listenMs: 20,
  load: { te: 20, diffusion: 20, vae: 20, eager: 20 },
  condMs: 10,
  stepMs: 30,
  decodeMs: 20,
  warmup: { cond: 0, step: 0, decode: 0 },
  exitMs: 0,
};

/** @param {NodeJS.ProcessEnv} env @param {string} name @returns {number | undefined} */
function ms(env, name) {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  const n = Number(raw);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** @param {NodeJS.ProcessEnv} env @returns {Timing} */
export function timingFromEnv(env) {
  const scale = ms(env, "FAKE_SD_REAL_TIMING");
  const base = scale !== undefined && scale > 0 ? CAPTURED : FAST;
  const k = scale !== undefined && scale > 0 ? scale : 1;
  const load = ms(env, "FAKE_SD_LOAD_MS");
  return {
    listenMs: ms(env, "FAKE_SD_LISTEN_MS") ?? base.listenMs * k,
    load: {
      te: load ?? base.load.te * k,
      diffusion: load ?? base.load.diffusion * k,
      vae: load ?? base.load.vae * k,
      eager: load ?? base.load.eager * k,
    },
    condMs: ms(env, "FAKE_SD_COND_MS") ?? base.condMs * k,
    stepMs: ms(env, "FAKE_SD_STEP_MS") ?? base.stepMs * k,
    decodeMs: ms(env, "FAKE_SD_DECODE_MS") ?? base.decodeMs * k,
    warmup: { cond: base.warmup.cond * k, step: base.warmup.step * k, decode: base.warmup.decode * k },
    exitMs: base.exitMs * k,
  };
}
