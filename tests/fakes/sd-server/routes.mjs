// @ts-check
/**
 * sd-server's HTTP API (examples/server/routes_*.cpp, main.cpp, cpp-httplib 0.28): the same
 * paths, statuses, bodies (nlohmann dumps: sorted keys) and content types. One generation at
 * a time: every generation takes the same mutex (`exclusive`), the GET routes never do.
 */
import fs from "node:fs";
import path from "node:path";
import { makePicture, renderPixels, encodePng } from "../sd-cli/image.mjs";
import { JsonError, dumpJson, dumpByteString, jfloat32, parseJson } from "./json.mjs";
import {
  SAMPLE_METHODS,
  SCHEDULER_NAMES,
  buildOpenAiRequest,
  buildSdapiRequest,
  buildSdcppRequest,
  displayModelPath,
  imageParams,
  infoField,
  pathStem,
} from "./params.mjs";

/** @typedef {import("node:http").IncomingMessage} IncomingMessage */
/** @typedef {import("node:http").ServerResponse} ServerResponse */
/** @typedef {import("./json.mjs").JsonValue} JsonValue */
/** @typedef {import("./params.mjs").GenParams} GenParams */
/** @typedef {import("./params.mjs").CtxParams} CtxParams */
/** @typedef {import("./params.mjs").Runtime} Runtime */
/** @typedef {import("./engine.mjs").Engine} Engine */

/**
 * @typedef {object} ServerState
 * @property {Runtime} rt
 * @property {Engine} engine
 * @property {string} serveHtmlPath
 * @property {string} hiresUpscalersDir
 * @property {<R>(fn: () => Promise<R>) => Promise<R>} exclusive  the generation mutex
 * @property {(msg: string) => void} internalError  a bug in the double, not a simulated behaviour
 */

/** A response as httplib sends it. @typedef {{ status: number, body: string | Buffer, type: string | null, headers?: Record<string, string> }} Reply */

/** @param {number} status @param {JsonValue} body @returns {Reply} */
const json = (status, body) => ({ status, body: dumpJson(body), type: "application/json" });
/** A literal body (R"({"error":"empty body"})" in the source). @param {number} status @param {string} text @returns {Reply} */
const raw = (status, text) => ({ status, body: text, type: "application/json" });
/** @type {Reply} httplib's answer when no route matches */
const NOT_FOUND = { status: 404, body: "", type: null };

/**
 * The 500 the handlers' catch blocks send: {"error":"server_error","message":e.what()}. A what()
 * that is not UTF-8 makes that dump throw too; httplib then answers 500 with no body and the
 * message in an EXCEPTION_WHAT header.
 * @param {unknown} err @param {ServerState} s @param {string} [errorName] @returns {Reply}
 */
function serverError(err, s, errorName = "server_error") {
  if (!(err instanceof JsonError)) s.internalError(err instanceof Error ? (err.stack ?? err.message) : String(err));
  const what = err instanceof JsonError && err.bytes ? err.bytes : Buffer.from(err instanceof Error ? err.message : String(err), "utf8");
  try {
    return { status: 500, body: `{"error":${JSON.stringify(errorName)},"message":${dumpByteString(what)}}`, type: "application/json" };
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    return { status: 500, body: "", type: null, headers: { EXCEPTION_WHAT: msg } };
  }
}

/**
 * PNG bytes of one result image, with the `parameters` tEXt chunk unless metadata is off.
 * @param {GenParams} g @param {bigint} seed @param {number} width @param {number} height @param {string} text
 */
function pngOf(g, seed, width, height, text) {
  const pixels = renderPixels(makePicture(seed, g.prompt), width, height);
  return encodePng(pixels, width, height, g.embedImageMetadata && text !== "" ? text : undefined);
}

// ---------------------------------------------------------------------------------------------
// the async job API (async_jobs.cpp)
// ---------------------------------------------------------------------------------------------

/**
 * @typedef {object} Job
 * @property {string} id
 * @property {"queued" | "generating" | "completed" | "failed" | "cancelled"} status
 * @property {number} created
 * @property {number} started
 * @property {number} completed
 * @property {string} outputFormat
 * @property {string[]} images
 * @property {string} errorCode
 * @property {string} errorMessage
 * @property {GenParams} params
 */

const unixNow = () => Math.floor(Date.now() / 1000);

class JobManager {
  constructor() {
    /** @type {Map<string, Job>} */
    this.jobs = new Map();
    /** @type {Map<string, number>} */
    this.expired = new Map();
    /** @type {string[]} */
    this.queue = [];
    this.nextId = 0;
    this.maxPending = 64;
    this.ttl = 600;
  }

  purge() {
    const t = unixNow();
    for (const [id, until] of this.expired) if (until <= t) this.expired.delete(id);
    for (const [id, job] of this.jobs) {
      if (job.completed !== 0 && t - job.completed >= this.ttl) {
        this.expired.set(id, t + Math.max(this.ttl, 60));
        this.jobs.delete(id);
      }
    }
  }

  pending() {
    return [...this.jobs.values()].filter((j) => j.status === "queued" || j.status === "generating").length;
  }

  newId() {
    return `job_${unixNow().toString(16)}_${(this.nextId++).toString(16).padStart(8, "0")}`;
  }

  /** make_async_job_json @param {Job} job */
  toJson(job) {
    /** @type {Record<string, JsonValue>} */
    const r = {
      id: job.id,
      kind: "img_gen",
      status: job.status,
      created: job.created,
      started: job.started === 0 ? null : job.started,
      completed: job.completed === 0 ? null : job.completed,
      queue_position: job.status === "queued" ? this.queue.indexOf(job.id) + 1 : 0,
    };
    if (job.status === "completed") {
      r.result = { output_format: job.outputFormat, images: job.images.map((b64, index) => ({ index, b64_json: b64 })) };
      r.error = null;
    } else if (job.status === "failed" || job.status === "cancelled") {
      r.result = null;
      r.error = { code: job.errorCode || (job.status === "cancelled" ? "cancelled" : "generation_failed"), message: job.errorMessage };
    } else {
      r.result = null;
      r.error = null;
    }
    return r;
  }
}

// ---------------------------------------------------------------------------------------------
// routes
// ---------------------------------------------------------------------------------------------

/** @param {ServerState} s */
export function createRoutes(s) {
  const { rt, engine } = s;
  const jobs = new JobManager();

  /**
   * Run one generation under the mutex; the PNGs are encoded after it is released (as the real
   * handlers do), so the next request's generation can start while this response is written.
   * @param {GenParams} g @param {boolean} img2img
   * @returns {Promise<{ png: Buffer, infotext: string }[] | null>}
   */
  async function generate(g, img2img) {
    const result = await s.exclusive(() => engine.generate(g, img2img));
    if (!result.ok) return null;
    return result.seeds.map((seed) => {
      const infotext = imageParams(rt.ctx, g, seed);
      return { png: pngOf(g, seed, result.width, result.height, infotext), infotext };
    });
  }

  /** sdapi_any2img @param {Buffer} body @param {boolean} img2img @returns {Promise<Reply>} */
  async function sdapiAny2img(body, img2img) {
    try {
      if (body.length === 0) return raw(400, '{"error":"empty body"}');
      const j = parseJson(body);
      const built = buildSdapiRequest(j, rt, img2img);
      if (!built.ok) return json(400, { error: built.error });
      const images = await generate(built.params, img2img);
      if (images === null || images.length === 0) return raw(500, '{"error":"generate_image returned no results"}');
      const info = infoField(
        rt.ctx,
        built.params,
        img2img,
        images.map((i) => i.infotext),
      );
      return json(200, { images: images.map((i) => i.png.toString("base64")), parameters: j, info: dumpJson(info) });
    } catch (err) {
      return serverError(err, s);
    }
  }

  /** POST /v1/images/generations @param {Buffer} body @returns {Promise<Reply>} */
  async function openAiGenerations(body) {
    try {
      if (body.length === 0) return json(400, { error: "empty body" });
      const j = parseJson(body);
      const built = buildOpenAiRequest(j, rt);
      if (!built.ok) return json(400, { error: built.error });
      if (built.outputFormat !== "png") throw new Error(`fake sd-server: output_format ${built.outputFormat} is not simulated (only png)`);
      const images = await generate(built.params, false);
      if (images === null || images.length === 0) return json(500, { error: "generate_image returned no results" });
      return json(200, {
        created: unixNow(),
        data: images.map((i) => ({ b64_json: i.png.toString("base64") })),
        output_format: built.outputFormat,
      });
    } catch (err) {
      return serverError(err, s);
    }
  }

  /** POST /sdcpp/v1/img_gen @param {Buffer} body @returns {Reply} */
  function sdcppImgGen(body) {
    try {
      if (body.length === 0) return raw(400, '{"error":"empty body"}');
      /** @type {JsonValue} */
      let j;
      try {
        j = parseJson(body);
      } catch (err) {
        if (err instanceof JsonError && err.kind === "parse_error") {
          const what = err.bytes ?? Buffer.from(err.message);
          return { status: 400, body: `{"error":"invalid json","message":${dumpByteString(what)}}`, type: "application/json" };
        }
        throw err;
      }
      const built = buildSdcppRequest(j, rt);
      if (!built.ok) return json(400, { error: built.error });
      if (built.outputFormat !== "png") throw new Error(`fake sd-server: output_format ${built.outputFormat} is not simulated (only png)`);
      jobs.purge();
      if (jobs.pending() >= jobs.maxPending) return raw(429, '{"error":"job queue is full"}');
      /** @type {Job} */
      const job = {
        id: jobs.newId(),
        status: "queued",
        created: unixNow(),
        started: 0,
        completed: 0,
        outputFormat: built.outputFormat,
        images: [],
        errorCode: "",
        errorMessage: "",
        params: built.params,
      };
      jobs.jobs.set(job.id, job);
      jobs.queue.push(job.id);
      void runJob(job);
      return json(202, { id: job.id, kind: "img_gen", status: "queued", created: job.created, poll_url: `/sdcpp/v1/jobs/${job.id}` });
    } catch (err) {
      return serverError(err, s);
    }
  }

  /** The async worker's turn for one job: it waits for the generation mutex like any request. @param {Job} job */
  async function runJob(job) {
    await s.exclusive(async () => {
      const at = jobs.queue.indexOf(job.id);
      if (at < 0) return; // cancelled while queued
      jobs.queue.splice(at, 1);
      job.status = "generating";
      job.started = unixNow();
      const result = await engine.generate(job.params, job.params.initImage !== null);
      job.completed = unixNow();
      if (result.ok) {
        job.status = "completed";
        job.images = result.seeds.map((seed) =>
          pngOf(job.params, seed, result.width, result.height, imageParams(rt.ctx, job.params, seed)).toString("base64"),
        );
      } else {
        job.status = "failed";
        job.errorCode = "generation_failed";
        job.errorMessage = "generate_image returned no results";
      }
      jobs.purge();
    });
  }

  /** GET /sdcpp/v1/jobs/{id} and POST .../cancel @param {string} id @param {boolean} cancel @returns {Reply} */
  function jobRoute(id, cancel) {
    jobs.purge();
    const job = jobs.jobs.get(id);
    if (!job) return jobs.expired.has(id) ? raw(410, '{"error":"job expired"}') : raw(404, '{"error":"job not found"}');
    if (cancel && job.status === "queued") {
      jobs.queue.splice(jobs.queue.indexOf(job.id), 1);
      job.status = "cancelled";
      job.completed = unixNow();
      job.errorCode = "cancelled";
      job.errorMessage = "job cancelled by client";
    } else if (cancel && job.status === "generating") {
      return raw(409, '{"error":"job is currently generating and cannot be interrupted yet"}');
    }
    return json(200, jobs.toJson(job));
  }

  /** refresh_lora_cache: the files under --lora-model-dir, sorted by relative path. */
  function loraEntries() {
    const dir = rt.ctx.loraModelDir;
    /** @type {{ name: string, path: string, fullpath: string }[]} */
    const entries = [];
    /** @param {string} at */
    const walk = (at) => {
      let names = [];
      try {
        names = fs.readdirSync(at, { withFileTypes: true });
      } catch {
        return;
      }
      for (const d of names) {
        const full = path.join(at, d.name);
        if (d.isDirectory()) walk(full);
        else if (d.isFile() && [".gguf", ".pt", ".pth", ".safetensors"].includes(path.extname(d.name).toLowerCase())) {
          entries.push({ name: pathStem(d.name), path: path.relative(dir, full).split(path.sep).join("/"), fullpath: full });
        }
      }
    };
    if (dir !== "") walk(dir);
    return entries.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  }

  /** refresh_upscaler_cache: the files directly in --hires-upscalers-dir, sorted by name. */
  function upscalerEntries() {
    const dir = s.hiresUpscalersDir;
    if (dir === "") return [];
    let names = [];
    try {
      names = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return [];
    }
    return names
      .filter((d) => d.isFile() && [".gguf", ".pt", ".pth", ".safetensors"].includes(path.extname(d.name).toLowerCase()))
      .map((d) => ({ name: pathStem(d.name), fullpath: path.resolve(dir, d.name), model_name: "ESRGAN_4x" }))
      .sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  }

  const schedulerList = () => SCHEDULER_NAMES.flatMap((n) => (n === "discrete" ? [n, "normal"] : [n]));

  function capabilities() {
    const d = rt.defaults;
    const fin = (/** @type {number} */ x) => (Number.isFinite(x) ? jfloat32(x) : null);
    const defaults = {
      prompt: d.prompt,
      negative_prompt: d.negativePrompt,
      clip_skip: d.clipSkip,
      width: d.width > 0 ? d.width : 512,
      height: d.height > 0 ? d.height : 512,
      strength: jfloat32(d.strength),
      seed: d.seed,
      batch_count: d.batchCount,
      qwen_image_layers: 3,
      auto_resize_ref_image: d.autoResizeRefImage,
      increase_ref_index: d.increaseRefIndex,
      control_strength: jfloat32(d.controlStrength),
      ip_adapter_strength: jfloat32(d.ipAdapterStrength),
      sample_params: {
        scheduler: d.sample.scheduler ?? "default",
        sample_method: d.sample.method ?? "default",
        sample_steps: d.sample.steps,
        eta: fin(d.sample.eta),
        shifted_timestep: d.sample.shiftedTimestep,
        flow_shift: fin(d.sample.flowShift),
        guidance: {
          txt_cfg: jfloat32(d.sample.txtCfg),
          img_cfg: fin(d.sample.imgCfg),
          distilled_guidance: jfloat32(d.sample.distilledGuidance),
          slg: { layers: d.skipLayers, layer_start: jfloat32(d.sample.slgStart), layer_end: jfloat32(d.sample.slgEnd), scale: jfloat32(d.sample.slgScale) },
        },
      },
      hires: {
        enabled: d.hiresEnabled,
        upscaler: "Latent",
        scale: jfloat32(2),
        target_width: 0,
        target_height: 0,
        steps: 0,
        denoising_strength: jfloat32(0.7),
        custom_sigmas: [],
        upscale_tile_size: 128,
      },
      vae_tiling_params: {
        enabled: d.vaeTiling,
        temporal_tiling: false,
        tile_size_x: 0,
        tile_size_y: 0,
        target_overlap: jfloat32(0.5),
        rel_size_x: jfloat32(0),
        rel_size_y: jfloat32(0),
        extra_tiling_args: "",
      },
      cache_mode: d.cacheMode,
      cache_option: "",
      scm_mask: "",
      scm_policy_dynamic: true,
      output_format: "png",
      output_compression: 100,
    };
    const features = {
      init_image: true,
      mask_image: true,
      control_image: true,
      ip_adapter_image: true,
      ref_images: true,
      lora: true,
      vae_tiling: true,
      hires: true,
      cache: true,
      cancel_queued: true,
      cancel_generating: false,
    };
    const modelPath = displayModelPath(rt.ctx);
    jobs.purge();
    return {
      model: { name: path.posix.basename(modelPath), stem: pathStem(modelPath), path: modelPath },
      current_mode: "img_gen",
      supported_modes: ["img_gen"],
      defaults,
      defaults_by_mode: { img_gen: defaults },
      limits: { min_width: 64, max_width: 4096, min_height: 64, max_height: 4096, max_batch_count: 8, max_queue_size: jobs.maxPending },
      samplers: SAMPLE_METHODS,
      schedulers: schedulerList(),
      output_formats: ["png", "jpeg"],
      output_formats_by_mode: { img_gen: ["png", "jpeg"] },
      features,
      features_by_mode: { img_gen: features },
      loras: loraEntries().map((e) => ({ name: e.name, path: e.path })),
      upscalers: [
        "None",
        "Lanczos",
        "Nearest",
        "Latent",
        "Latent (nearest)",
        "Latent (nearest-exact)",
        "Latent (antialiased)",
        "Latent (bicubic)",
        "Latent (bicubic antialiased)",
        ...upscalerEntries().map((e) => e.name),
      ].map((name) => ({ name })),
    };
  }

  /** @type {Record<string, () => Reply>} */
  const gets = {
    "/": () => {
      if (s.serveHtmlPath !== "") {
        try {
          return { status: 200, body: fs.readFileSync(s.serveHtmlPath), type: "text/html" };
        } catch {
          return { status: 500, body: "Error: Unable to read HTML file", type: "text/plain" };
        }
      }
      return { status: 200, body: "Stable Diffusion Server is running", type: "text/html" };
    },
    "/v1/models": () => json(200, { data: [{ id: "sd-cpp-local", object: "model", owned_by: "local" }] }),
    "/sdapi/v1/loras": () => json(200, loraEntries().map((e) => ({ name: e.name, path: e.path }))),
    "/sdapi/v1/upscalers": () => {
      const builtin = (/** @type {string} */ name) => ({ name, model_name: null, model_path: null, model_url: null, scale: 4 });
      return json(200, [
        builtin("None"),
        builtin("Lanczos"),
        builtin("Nearest"),
        ...upscalerEntries().map((e) => ({ name: e.name, model_name: e.model_name, model_path: e.fullpath, model_url: null, scale: 4 })),
      ]);
    },
    "/sdapi/v1/latent-upscale-modes": () =>
      json(
        200,
        ["Latent", "Latent (nearest)", "Latent (nearest-exact)", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)"].map(
          (name) => ({ name }),
        ),
      ),
    "/sdapi/v1/samplers": () => json(200, ["default", ...SAMPLE_METHODS].map((name) => ({ name, aliases: [name], options: {} }))),
    "/sdapi/v1/schedulers": () => json(200, ["default", ...schedulerList()].map((name) => ({ name, label: name }))),
    "/sdapi/v1/sd-models": () => {
      const p = displayModelPath(rt.ctx);
      const stem = pathStem(p);
      return json(200, [
        { title: stem, model_name: stem, filename: path.posix.basename(p), hash: "8888888888", sha256: "8".repeat(64), config: null },
      ]);
    },
    "/sdapi/v1/options": () => json(200, { samples_format: "png", sd_model_checkpoint: pathStem(displayModelPath(rt.ctx)) }),
    "/sdcpp/v1/capabilities": () => json(200, capabilities()),
  };

  // the lora cache is what GET /sdapi/v1/loras (or the sdcpp API) last saw: a txt2img naming a
  // lora before anything refreshed it gets "invalid lora path"
  /** @type {{ path: string, fullpath: string }[]} */
  let loraCache = [];
  rt.refreshLoraCache = () => {
    loraCache = loraEntries();
  };
  rt.loraFullPath = (p) => loraCache.find((e) => e.path === p)?.fullpath ?? "";
  const refreshingGets = new Set(["/sdapi/v1/loras", "/sdcpp/v1/capabilities"]);

  /**
   * Route one request. `body` is the whole request body (httplib reads it before routing).
   * @param {string} method @param {string} pathname @param {Buffer} body @returns {Promise<Reply>}
   */
  return async function route(method, pathname, body) {
    if (method === "GET" || method === "HEAD") {
      const handler = gets[pathname];
      if (handler) {
        if (refreshingGets.has(pathname)) rt.refreshLoraCache();
        return handler();
      }
      const m = /^\/sdcpp\/v1\/jobs\/([A-Za-z0-9_-]+)$/.exec(pathname);
      if (m) return jobRoute(m[1] ?? "", false);
      return NOT_FOUND;
    }
    if (method === "POST") {
      switch (pathname) {
        case "/sdapi/v1/txt2img":
          return sdapiAny2img(body, false);
        case "/sdapi/v1/img2img":
          return sdapiAny2img(body, true);
        case "/v1/images/generations":
          return openAiGenerations(body);
        case "/v1/images/edits":
          return serverError(new Error("fake sd-server: /v1/images/edits (multipart) is not simulated"), s);
        case "/sdcpp/v1/img_gen":
          return sdcppImgGen(body);
        case "/sdcpp/v1/vid_gen":
          if (body.length === 0) return raw(400, '{"error":"empty body"}');
          return json(400, { error: "loaded model does not support vid_gen" });
      }
      const m = /^\/sdcpp\/v1\/jobs\/([A-Za-z0-9_-]+)\/cancel$/.exec(pathname);
      if (m) return jobRoute(m[1] ?? "", true);
    }
    return NOT_FOUND;
  };
}

