#!/usr/bin/env node
// @ts-check
/**
 * A test double for stable-diffusion.cpp's `sd-server` (master-827, commit 97d29908),
 * byte-faithful on its streams and its HTTP answers. See fixtures/sd-server/ (the real runs it
 * copies, and the README listing every trap) and tests/unit/fakes/sd-server-double.test.ts (what
 * is checked). Point the service at it like the real binary: SD_SERVER_BIN=tests/fakes/sd-server.mjs.
 *
 * What is simulated:
 *  - the command line: the Svr / Context / Default Generation options of `--help`; an unknown
 *    argument (e.g. `--preview`: the server has no preview flags) prints the error on stderr and
 *    the usage on stdout, exit 1; `--help` the usage, exit 0; `--version` the version line.
 *  - start-up: the new_sd_ctx lines (model files must exist, their content is ignored; the model
 *    kind is guessed from the file name as the sd-cli double does), then `listening on:`
 *    printed BEFORE the socket is bound. A missing -m file: WARN + 3 ERROR lines, exit 1 before
 *    listening. A taken port (EADDRINUSE or any bind error): exit 0 right after `listening on:`,
 *    no error text.
 *  - HTTP (node:http): every route of examples/server (sdapi, OpenAI, sdcpp async API, listings)
 *    with the same statuses, bodies (nlohmann::json dumps: sorted keys, `7.0` floats) and content
 *    types; nlohmann's exact parse / type error texts; wrongly typed fields in
 *    <sd_cpp_extra_args> skipped silently; steps clamped to 1..100 and batch to 1..8; a seed < 0
 *    becomes glibc rand() after srand(time) (the same seed for two requests in the same second).
 *    CORS headers and 204 on OPTIONS as main.cpp's pre-routing handler. At most
 *    max(8, cores-1) connections are served at once (httplib's thread pool: a keep-alive
 *    connection holds its thread until it closes); a request on another connection waits.
 *  - generation: one at a time (a mutex; GETs answer at once meanwhile), weights loaded lazily
 *    (text encoder, then the UNet inside sampling step 1, then the VAE decoder) with the same `#`
 *    bars and log lines, never again afterwards; `--eager-load` loads everything before
 *    `listening on`. The `\r` step bars, one write each. A real PNG of the (aligned) size with
 *    the `parameters` tEXt chunk the real one writes; pixels depend on (seed, prompt) only, the
 *    same as the sd-cli double's; seeds count up within a batch.
 *  - no cancel: a client that disconnects does not stop its generation; the async API answers
 *    409 to a cancel of a generating job. No SIGTERM handler: SIGTERM kills it at once.
 *  - stdout is written one fflush at a time (a log line is ONE write), stderr unbuffered (the
 *    `[ERROR] ` tag and the message are TWO writes), as the real program writes them.
 *
 * Behaviour knobs (environment variables; times in milliseconds):
 *
 *   FAKE_SD_LISTEN_MS=20      spawn → `listening on` (Node's own start-up, ~0.1 s, is the floor)
 *   FAKE_SD_LOAD_MS=20        time of each lazy tensor-loading phase (text encoder, UNet, VAE;
 *                             also the whole --eager-load)
 *   FAKE_SD_COND_MS=10        text-encoder compute time (get_learned_condition)
 *   FAKE_SD_STEP_MS=30        time of one sampling step
 *   FAKE_SD_DECODE_MS=20      VAE decode (or encode) time per latent
 *   FAKE_SD_REAL_TIMING=scale replay the capture's costs x scale instead of the short defaults:
 *                             listen 282, loads 610 / 4300 / 200 (eager 4000), cond 370, step 750,
 *                             decode 700, plus first-use warm-ups (cond +160, step +1100, decode
 *                             +230) and a 120 ms death after SIGTERM/SIGINT while weights are
 *                             resident: at scale 1 a first 64x64 4-step request takes ~10.7 s and
 *                             the next ones ~4.1 s, as in serve-txt2img-twice. The knobs above
 *                             still override single phases.
 *   FAKE_SD_CRASH_AT_STEP=N   die during sampling step N, counted over the life of the process
 *                             (from 1): bars 1..N-1 are printed, step N's never is.
 *   FAKE_SD_CRASH_MODE=abort  (default) a CUDA error: `[ERROR] CUDA error: ...` lines and ggml's
 *                             `ggml-cuda.cu:88: CUDA error` on stderr, then death by SIGABRT; the
 *                             client sees its connection closed with no response.
 *   FAKE_SD_CRASH_MODE=fail   a failed compute instead (`exit` is accepted too): ERROR lines, the
 *                             request gets 500 {"error":"generate_image returned no results"}
 *                             and the server keeps serving.
 *   FAKE_SD_HANG_AT_STEP=N    at step N (counted as above) stop printing and never finish that
 *                             generation (the mutex stays taken; GETs still answer).
 *   FAKE_SD_OOM=1             a CUDA build out of VRAM: the UNet allocation fails on every
 *                             request (cudaMalloc ... out of memory, alloc params backend buffer
 *                             failed, prepare graph weights failed, sampling failed on stderr) and
 *                             the request gets 500 {"error":"generate_image returned no results"}
 *                             (generate_image returns false; the server does not exit). With
 *                             --eager-load the allocation fails at start-up: exit 1 before listening.
 *   FAKE_SD_PORT_SHARED=1     a bind failure is taken as the port-shared case (the holder used
 *                             SO_REUSEPORT, e.g. a stale sd-server): keep running after
 *                             `listening on` without serving (the kernel would give every
 *                             connection to either server; here the holder gets them all). Node 20
 *                             cannot bind with SO_REUSEPORT, so the double cannot share for real.
 *   FAKE_SD_TIMESTAMPS=file   after each sampling-step bar write, append
 *                             {"step":s,"image":i,"request":r,"at":<performance.timeOrigin+now, ms>}
 *                             (i from 1 within the batch, r = generation number in this process).
 *   FAKE_SD_HTTP_THREADS=n    connections served at once (default max(8, cores - 1)).
 *   FAKE_GPU_DIR=dir          the simulated GPU shared with the fake Ollama (tests/fakes/fake-gpu.mjs):
 *                             recordSpawn once the arguments are valid; the diffusion marker
 *                             (sd-<pid>.running, as an sd-cli's) is taken when weights first load
 *                             (first request, or start-up with --eager-load) and held until the
 *                             process ends, every way out (exit, crash, SIGTERM/SIGINT/SIGHUP: the
 *                             marker and the claim are removed and the process re-kills itself with
 *                             the signal). Every out-of-memory it prints is appended to oom.jsonl.
 *                             Without a card (the strict mode): an LLM resident when weights load:
 *                             recordViolation, then the out-of-memory failure above.
 *                             With a card (setCard): the need of the request's shape (VRAM_NEEDS in
 *                             sd-cli/models.mjs; --eager-load: the -W/-H default size) is claimed as
 *                             holder sd-<pid> when the UNet loads, held until exit, raised when a
 *                             later request needs more. No room: the out-of-memory failure above
 *                             (first load), or a compute-buffer allocation failure (a raise: cudaMalloc
 *                             out of memory, `unet: failed to allocate the compute buffer`, 500);
 *                             no violation either way, and the server keeps serving.
 *   FAKE_SD_VRAM_MIB=n        with a card: need n MiB whatever the shape, or per size:
 *                             `1024x1024=9000,*=3000` (unlisted sizes without `*` use the table).
 *   FAKE_SD_HELP_PATH=file    the captured --help text (default:
 *                             <repo>/../shared/fixtures/sd-server/help.stdout; a short generated
 *                             usage if absent).
 *
 * Not simulated: /v1/images/edits (multipart), jpeg/webp output, hires fix passes (the fields are
 * read, nothing more), video, ControlNet/PhotoMaker inputs, -v's long parameter dumps.
 */
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as fakeGpu from "./fake-gpu.mjs";
import { printErrors, writeChunk, writeBuffered, setBrokenPipeHandler, sleepSync } from "./sd-cli/output.mjs";
import { parseServerArgs, validateServerArgs, fallbackUsage } from "./sd-server/options.mjs";
import { ServerLogger, silence } from "./sd-server/log.mjs";
import { Engine, sleep } from "./sd-server/engine.mjs";
import { timingFromEnv } from "./sd-server/timing.mjs";
import { VERSION_LINE, defaultGenParams, strToScheduler } from "./sd-server/params.mjs";
import { createRoutes } from "./sd-server/routes.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_HELP_PATH = path.resolve(HERE, "../../../shared/fixtures/sd-server/help.stdout");

// ---------------------------------------------------------------------------------------------
// knobs
// ---------------------------------------------------------------------------------------------

const env = process.env;
/** @param {string} name */
function countKnob(name) {
  const n = Number(env[name] ?? "");
  return Number.isInteger(n) && n > 0 ? n : 0;
}
const truthy = (/** @type {string | undefined} */ v) => v === "1" || v === "true";
const TIMING = timingFromEnv(env);
const CRASH_AT_STEP = countKnob("FAKE_SD_CRASH_AT_STEP");
const CRASH_MODE = env.FAKE_SD_CRASH_MODE === "fail" || env.FAKE_SD_CRASH_MODE === "exit" ? "fail" : "abort";
const HANG_AT_STEP = countKnob("FAKE_SD_HANG_AT_STEP");
const OOM = truthy(env.FAKE_SD_OOM);
const PORT_SHARED = truthy(env.FAKE_SD_PORT_SHARED);
const TIMESTAMPS = env.FAKE_SD_TIMESTAMPS || undefined;
const GPU_DIR = env.FAKE_GPU_DIR || undefined;
const VRAM_MIB = env.FAKE_SD_VRAM_MIB || undefined;
const HELP_PATH = env.FAKE_SD_HELP_PATH || DEFAULT_HELP_PATH;
const HTTP_THREADS = countKnob("FAKE_SD_HTTP_THREADS") || Math.max(8, os.availableParallelism() - 1);

// ---------------------------------------------------------------------------------------------
// process lifecycle: the simulated GPU marker goes away on every way out
// ---------------------------------------------------------------------------------------------

/** @type {Engine | undefined} */
let engine;
const releaseGpu = () => engine?.releaseGpu();
process.on("exit", releaseGpu);

/** @param {number} code @returns {never} */
function exitWith(code) {
  releaseGpu();
  process.exit(code);
}

/** Death by SIGABRT, like abort(3). @returns {never} */
function abortProcess() {
  releaseGpu();
  process.kill(process.pid, "SIGABRT");
  for (;;) sleepSync(1000);
}

// Until httplib::Server is constructed (after the model is opened) a reader that went away
// kills the program with SIGPIPE (Node ignores it; 128+13). Afterwards SIGPIPE is ignored and
// the server keeps serving with nobody reading its output.
let sigpipeIgnored = false;
setBrokenPipeHandler(() => {
  if (!sigpipeIgnored) exitWith(141);
});

let dying = false;
// No handler in the real program. One is needed only to release the simulated GPU, or to take
// as long to die as a process with 2 GB resident does (FAKE_SD_REAL_TIMING).
if (GPU_DIR || TIMING.exitMs > 0) {
  for (const signal of /** @type {const} */ (["SIGTERM", "SIGINT", "SIGHUP"])) {
    process.once(signal, () => {
      dying = true;
      silence();
      const delay = engine && (engine.loaded.te || engine.loaded.diffusion) ? TIMING.exitMs : 0;
      const die = () => {
        releaseGpu();
        process.kill(process.pid, signal);
      };
      if (delay > 0) setTimeout(die, delay);
      else die();
    });
  }
}

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------

const argv = process.argv.slice(2);
const argv0 = process.argv[1] ?? "sd-server";

function usageText() {
  let text;
  try {
    text = fs.readFileSync(HELP_PATH, "utf8");
  } catch {
    return fallbackUsage(VERSION_LINE, argv0);
  }
  return text.replace(/^Usage: \S+ \[options\]$/m, `Usage: ${argv0} [options]`);
}


async function main() {
  if (argv[0] === "--version") {
    writeChunk(1, `${VERSION_LINE}\n`);
    exitWith(0);
  }
  const early = new ServerLogger({ verbose: false, color: argv.includes("--color") });
  const parsed = parseServerArgs(argv);
  switch (parsed.kind) {
    case "usage-exit":
      printErrors(parsed.errors, early);
      writeBuffered(1, usageText());
      exitWith(parsed.code);
    case "abort":
      writeChunk(2, parsed.exception.terminateMessage());
      abortProcess();
    case "list-devices":
      writeBuffered(1, "CUDA0\tNVIDIA GeForce RTX 4060 Laptop GPU\nCPU\tCPU\n");
      exitWith(0);
  }
  const a = parsed.args;
  const problems = validateServerArgs(a);
  if (problems.length > 0) {
    printErrors(problems, early);
    writeBuffered(1, usageText());
    exitWith(1);
  }
  const S = a.strings;
  const log = new ServerLogger({ verbose: a.bools.verbose === true, color: a.bools.color === true });
  const listenIp = S.listen_ip ?? "127.0.0.1";
  const listenPort = a.ints.listen_port ?? 1234;
  const serveHtmlPath = S.serve_html_path ?? "";

  if (GPU_DIR) fakeGpu.recordSpawn(GPU_DIR, process.pid, argv);

  log.debug("main.cpp", 82, `version: ${VERSION_LINE}`);
  log.debug("main.cpp", 83, "System Info: \n    SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | CUDA = 1 | \n");
  log.debug(
    "main.cpp",
    84,
    `SDSvrParams {\n  listen_ip: ${listenIp},\n  listen_port: "${listenPort}",\n  serve_html_path: "${serveHtmlPath}",\n}`,
  );

  /** @type {import("./sd-server/params.mjs").CtxParams} */
  const ctx = {
    modelPath: S.model ?? "",
    diffusionModelPath: S.diffusion_model ?? "",
    clipLPath: S.clip_l ?? "",
    clipGPath: S.clip_g ?? "",
    t5xxlPath: S.t5xxl ?? "",
    llmPath: S.llm ?? "",
    llmVisionPath: S.llm_vision ?? "",
    vaePath: S.vae ?? "",
    taesdPath: S.taesd ?? "",
    controlNetPath: S.control_net ?? "",
    highNoiseDiffusionModelPath: S.high_noise_diffusion_model ?? "",
    uncondDiffusionModelPath: S.uncond_diffusion_model ?? "",
    loraModelDir: S.lora_model_dir ?? "",
    rng: a.manual.rng ?? "cuda",
    samplerRng: a.manual.sampler_rng ?? null,
  };

  // the "Default Generation Options" every request starts from
  const defaults = defaultGenParams();
  defaults.prompt = S.prompt ?? "";
  defaults.negativePrompt = S.negative_prompt ?? "";
  if (a.ints.width !== undefined) defaults.width = a.ints.width;
  if (a.ints.height !== undefined) defaults.height = a.ints.height;
  if (a.ints.steps !== undefined) defaults.sample.steps = a.ints.steps;
  if (a.ints.batch_count !== undefined) defaults.batchCount = a.ints.batch_count;
  if (a.ints.clip_skip !== undefined) defaults.clipSkip = a.ints.clip_skip;
  if (a.floats.cfg_scale !== undefined) defaults.sample.txtCfg = Math.fround(a.floats.cfg_scale);
  if (a.floats.guidance !== undefined) defaults.sample.distilledGuidance = Math.fround(a.floats.guidance);
  if (a.floats.strength !== undefined) defaults.strength = Math.fround(a.floats.strength);
  if (a.floats.eta !== undefined) defaults.sample.eta = Math.fround(a.floats.eta);
  if (a.floats.flow_shift !== undefined) defaults.sample.flowShift = Math.fround(a.floats.flow_shift);
  if (a.floats.img_cfg_scale !== undefined) defaults.sample.imgCfg = Math.fround(a.floats.img_cfg_scale);
  if (a.floats.slg_scale !== undefined) defaults.sample.slgScale = Math.fround(a.floats.slg_scale);
  if (a.seed !== undefined) defaults.seed = a.seed < 0n ? -1n : a.seed;
  if (a.manual.sampling_method !== undefined) defaults.sample.method = a.manual.sampling_method;
  if (a.manual.scheduler !== undefined) defaults.sample.scheduler = strToScheduler(a.manual.scheduler);
  if (a.bools.embed_image_metadata === false) defaults.embedImageMetadata = false;
  if (a.bools.vae_tiling === true) defaults.vaeTiling = true;

  engine = new Engine({
    log,
    ctx,
    timing: TIMING,
    gpuDir: GPU_DIR,
    oom: OOM,
    vramMib: VRAM_MIB,
    crashAtStep: CRASH_AT_STEP,
    crashMode: CRASH_MODE,
    hangAtStep: HANG_AT_STEP,
    timestamps: TIMESTAMPS,
    abort: abortProcess,
  });
  const defaultSize = { width: defaults.width > 0 ? defaults.width : 512, height: defaults.height > 0 ? defaults.height : 512 };
  if (!(await engine.open(a.bools.eager_load === true, defaultSize))) {
    log.error("main.cpp", 92, "new_sd_ctx_t failed");
    exitWith(1);
  }

  // one generation at a time: sd_ctx_mutex
  /** @type {Promise<unknown>} */
  let mutexTail = Promise.resolve();
  /** @template R @param {() => Promise<R>} fn @returns {Promise<R>} */
  const exclusive = (fn) => {
    const run = mutexTail.then(fn);
    mutexTail = run.catch(() => {});
    return run;
  };
  const route = createRoutes({
    rt: { ctx, defaults, log, loraFullPath: () => "", refreshLoraCache: () => {} },
    engine,
    serveHtmlPath,
    hiresUpscalersDir: S.hires_upscalers_dir ?? "",
    exclusive,
    internalError: (msg) => writeChunk(2, `fake sd-server internal error: ${msg}\n`),
  });

  sigpipeIgnored = true; // httplib::Server's constructor: signal(SIGPIPE, SIG_IGN)
  const server = http.createServer();
  server.keepAliveTimeout = 5000; // CPPHTTPLIB_KEEPALIVE_TIMEOUT_SECOND
  server.maxRequestsPerSocket = 100; // CPPHTTPLIB_KEEPALIVE_MAX_COUNT

  // httplib's thread pool: a connection holds a thread until it closes (keep-alive included);
  // a request on a connection without a thread waits for one. (Node reads the socket itself,
  // so the wait starts at the first request rather than at accept.)
  let busy = 0;
  /** @type {WeakSet<import("node:net").Socket>} */
  const holding = new WeakSet();
  /** @type {{ socket: import("node:net").Socket, run: () => void }[]} */
  const waiting = [];
  const release = () => {
    busy--;
    while (waiting.length > 0 && busy < HTTP_THREADS) {
      const next = /** @type {{ socket: import("node:net").Socket, run: () => void }} */ (waiting.shift());
      if (next.socket.destroyed) continue;
      take(next.socket);
      next.run();
    }
  };
  /** @param {import("node:net").Socket} socket */
  const take = (socket) => {
    busy++;
    holding.add(socket);
    socket.once("close", release);
  };
  /** @param {import("node:net").Socket} socket @param {() => void} run */
  const withThread = (socket, run) => {
    if (holding.has(socket)) run();
    else if (busy < HTTP_THREADS) {
      take(socket);
      run();
    } else waiting.push({ socket, run });
  };

  server.on("request", (req, res) => withThread(req.socket, () => handle(req, res)));

  /** @param {import("node:http").IncomingMessage} req @param {import("node:http").ServerResponse} res */
  function handle(req, res) {
    /** @type {Buffer[]} */
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const method = req.method ?? "GET";
      const pathname = (req.url ?? "/").split("?")[0] ?? "/";
      // main.cpp's pre-routing handler
      const origin = req.headers.origin;
      /** @type {Record<string, string>} */
      const headers = {
        "Access-Control-Allow-Origin": typeof origin === "string" && origin !== "" ? origin : "*",
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "*",
        "Access-Control-Allow-Headers": "*",
      };
      if (method === "OPTIONS") {
        res.writeHead(204, headers);
        res.end();
        return;
      }
      void route(method, pathname, Buffer.concat(chunks)).then((reply) => {
        // a client that went away is ignored; a dying process answers nothing
        if (dying || res.destroyed || res.writableEnded) return;
        const body = typeof reply.body === "string" ? Buffer.from(reply.body, "utf8") : reply.body;
        if (reply.type !== null) headers["Content-Type"] = reply.type;
        headers["Content-Length"] = String(body.length);
        res.writeHead(reply.status, { ...headers, ...(reply.headers ?? {}) });
        res.end(method === "HEAD" ? undefined : body);
      });
    });
  }

  log.info("main.cpp", 148, `listening on: http://${listenIp}:${listenPort}\n`);
  server.once("error", () => {
    // svr.listen() returned false: main() returns 0 without a word
    if (PORT_SHARED) {
      setInterval(() => {}, 1 << 30);
      return;
    }
    exitWith(0);
  });
  server.listen({ port: listenPort, host: listenIp, backlog: 5 });
}

main().catch(async (err) => {
  writeChunk(2, `fake sd-server internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  await sleep(0);
  exitWith(70);
});

