import type { Command } from "commander";
import { z } from "zod";
import type { Config } from "../config/index.js";
import { locateExecutable } from "../config/index.js";
import { sdCliVersion } from "../diffusion/index.js";
import { checkOllama, OllamaProbe, type ResidentModel } from "../llm/index.js";
import { ModelRegistry } from "../models/index.js";
import { loadServerOptions } from "../server/index.js";
import { formatBytes } from "../setup/index.js";
import { cliCommand } from "./cli-command.js";
import { nextSteps, renderSteps, type NextStep, type ReadinessFacts } from "./readiness.js";

/**
 * `diffugen status`: what is resident on the GPU, the queue, and the registry's missing
 * files. It asks the running server first (GET /health, GET /stats); when none answers it
 * says so and reads what it can directly: Ollama's /api/ps at OLLAMA_BASE_URL, free
 * VRAM from nvidia-smi (NVIDIA_SMI, else on PATH), and sd-cli (SD_CPP_BIN) with its
 * `--version`. The missing model files are always listed: the server's view when it
 * answered, else this machine's MODELS_DIR. Each problem found ends in the command that
 * fixes it ("Next:").
 *
 * Exit code: 0 when the server or, failing that, Ollama answered; 1 when neither did
 * (nothing is running that could use the GPU); 2 for a bad option or variable.
 */

interface StatusOptions {
  url?: string;
  json?: boolean;
}

/** Each request gives up after this long: /health itself waits up to 2 s for Ollama. */
const requestTimeoutMs = 8_000;

export function registerStatusCommand(program: Command, loadConfig: () => Config): void {
  program
    .command("status")
    .description(
      "what is resident on the GPU, the queue and the model files missing, from the running server " +
        "(else from Ollama and nvidia-smi directly); exit 0 when the server or Ollama answered, 1 when neither did",
    )
    .option("--url <url>", "the server to ask (default DIFFUGEN_URL, else http://HOST:PORT)")
    .option("--json", "print the report as JSON")
    .action(async (options: StatusOptions) => {
      process.exitCode = await status(loadConfig(), options);
    });
}

// ------------------------------------------------------------------ what the server answers

const residentSchema = z.object({
  name: z.string(),
  sizeBytes: z.number(),
  sizeVramBytes: z.number(),
  fullyOnGpu: z.boolean(),
});

/** GET /health (src/server/routes/health.ts); only the fields shown here. */
const healthSchema = z.object({
  status: z.string(),
  ollama: z.object({
    reachable: z.boolean(),
    baseUrl: z.string(),
    version: z.string().optional(),
    model: z.string(),
    modelInstalled: z.boolean().optional(),
    error: z.string().optional(),
    resident: z.array(residentSchema).nullable(),
    residentError: z.string().optional(),
  }),
  sd: z.object({
    bin: z.string(),
    found: z.boolean(),
    path: z.string().nullable(),
    version: z.string().nullable(),
    versionError: z.string().optional(),
  }),
  models: z.array(
    z.object({
      name: z.string(),
      available: z.boolean(),
      files: z.array(z.object({ role: z.string(), path: z.string(), present: z.boolean() })),
    }),
  ),
  scheduler: z.object({
    llm: z.string(),
    gpu: z.looseObject({ kind: z.string(), jobId: z.string().optional(), jobIds: z.array(z.string()).optional() }),
    queue: z.array(z.object({ jobId: z.string(), phase: z.string() })),
    closing: z.boolean().optional(),
  }),
  jobs: z.object({ active: z.number() }).optional(),
  // Optional: servers from before the bypass watchdog do not send it; null: no watchdog.
  gate: z
    .object({
      bypasses: z.number(),
      last: z.object({ model: z.string(), at: z.string(), jobId: z.string().optional() }).nullable(),
      watching: z.boolean().optional(),
    })
    .nullable()
    .optional(),
});
type Health = z.output<typeof healthSchema>;

/** What /health answers a caller without the key when API_KEY is set. */
const bareStatus = z.strictObject({ status: z.string() });

const count = z.number().optional();
const meanOf = z.object({ count: z.number(), mean_ms: z.number() }).partial().optional();

/** GET /stats; lenient, so a field added or renamed later does not hide the rest. */
const statsSchema = z.looseObject({
  uptime_seconds: count,
  jobs: z.looseObject({ started: count, running: count }).optional(),
  images: count,
  failures: count,
  gpu: z
    .looseObject({
      swaps: count,
      unload: meanOf,
      reload: meanOf,
      unload_failures: count,
      reload_failures: count,
    })
    .optional(),
  queue: z
    .looseObject({
      length: count,
      jobs: z.array(z.looseObject({ job_id: z.string(), phase: z.string(), position: count, waiting_ms: count })).optional(),
    })
    .optional(),
  seconds_per_step: z.record(z.string(), z.looseObject({ mean: z.number(), samples: z.number() })).optional(),
  vram: z
    .looseObject({
      policy: z.string(),
      swaps_avoided: count,
      last_decision: z.string().nullable().optional(),
      card: z.looseObject({ total_mib: z.number(), free_mib: z.number(), llm_mib: z.number(), other_mib: z.number() }).nullable().optional(),
    })
    .optional(),
});
type Stats = z.output<typeof statsSchema>;

// ------------------------------------------------------------------ the report

interface ModelFiles {
  name: string;
  ready: boolean;
  missing: { role: string; path: string }[];
}

interface Report {
  server: {
    url: string;
    reachable: boolean;
    /** Why it could not be asked, or why /stats is absent. */
    error?: string | undefined;
    /** It answered /health with its bare status (this one): the details need API_KEY. */
    needsKey?: string | undefined;
    health?: Health | undefined;
    stats?: Stats | undefined;
    statsError?: string | undefined;
  };
  /** Read directly only when the server did not answer. */
  direct?:
    | {
        ollama: {
          baseUrl: string;
          reachable: boolean;
          resident: ResidentModel[];
          error?: string | undefined;
          model: string;
          /** undefined: Ollama down, or its list failed. */
          modelInstalled?: boolean | undefined;
        };
        /** undefined: no nvidia-smi, or it failed. */
        freeVramMiB: number | undefined;
        /** SD_CPP_BIN on this machine. */
        sd: ReadinessFacts["sd"];
      }
    | undefined;
  models: { source: "server" | "local"; modelsDir?: string | undefined; list: ModelFiles[] };
  /** The command for each problem above, in the order to run them. */
  nextSteps: NextStep[];
}

async function status(config: Config, options: StatusOptions): Promise<number> {
  const url = serverUrl(config, options.url);
  if (typeof url !== "string") {
    process.stderr.write(`diffugen: ${url.error}\n`);
    return 2;
  }
  const apiKey = loadServerOptions().apiKey;
  const server = await askServer(url, apiKey);

  let direct: Report["direct"];
  if (!server.reachable) {
    // A read-only probe: status never loads or unloads anything.
    const ollama = new OllamaProbe(config.llm, { requestTimeoutMs: 3_000 });
    const sdPath = locateExecutable(config.sd.bin);
    const [resident, freeVramMiB, llm, sdVersion] = await Promise.all([
      ollama.listResident().then(
        (models) => ({ reachable: true, resident: models }),
        (err: unknown) => ({ reachable: false, resident: [], error: errorText(err) }),
      ),
      ollama.freeVramMiB(),
      checkOllama(config.llm, { timeoutMs: 3_000 }),
      sdPath === undefined ? Promise.resolve(undefined) : sdCliVersion(config.sd.bin),
    ]);
    direct = {
      ollama: { baseUrl: config.llm.baseUrl, ...resident, model: config.llm.model, modelInstalled: resident.reachable ? llm.modelInstalled : undefined },
      freeVramMiB,
      sd: {
        bin: config.sd.bin,
        found: sdPath !== undefined,
        path: sdPath ?? null,
        version: sdVersion?.version ?? null,
        versionError: sdVersion?.error,
      },
    };
  }

  const models: Report["models"] = server.health
    ? { source: "server", list: server.health.models.map(fromHealth) }
    : { source: "local", modelsDir: config.sd.modelsDir, list: localModels(config) };
  const report: Report = { server, direct, models, nextSteps: steps(config, server, direct, models) };
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : render(report));
  return server.reachable || direct?.ollama.reachable ? 0 : 1;
}

/** The command for each problem the report lists: the server's view when it answered, else this machine's. */
function steps(config: Config, server: Report["server"], direct: Report["direct"], models: Report["models"]): NextStep[] {
  const cli = cliCommand();
  const facts = server.health
    ? { ollama: server.health.ollama, sd: server.health.sd }
    : direct
      ? { ollama: direct.ollama, sd: direct.sd }
      : undefined;
  const out: NextStep[] = [];
  if (!server.reachable) out.push({ command: `${cli} serve`, why: `start the server (or pass --url / set DIFFUGEN_URL; asked ${server.url})` });
  if (facts) {
    out.push(
      ...nextSteps(
        {
          ...facts,
          models: models.list.map((m) => ({ name: m.name, ready: m.ready })),
          defaultModel: config.sd.defaultModel,
        },
        cli,
      ),
    );
  }
  if (server.needsKey !== undefined) out.push({ command: "export API_KEY=<the server's key>", why: "the server shows its state only with its key" });
  if (server.statsError?.includes("API key")) out.push({ command: "export API_KEY=<the server's key>", why: "the statistics need it" });
  return out;
}

/** --url, else DIFFUGEN_URL, else where `diffugen serve` listens with this configuration. */
function serverUrl(config: Config, option: string | undefined): string | { error: string } {
  const given = option ?? (process.env.DIFFUGEN_URL || undefined);
  if (given !== undefined) {
    const parsed = z.url({ protocol: /^https?$/ }).safeParse(given);
    if (!parsed.success) return { error: `${option !== undefined ? "--url" : "DIFFUGEN_URL"} must be an http(s) URL, got '${given}'` };
    return parsed.data.replace(/\/+$/, "");
  }
  // A server listening on every address is reached on the loopback one.
  const host = config.server.host === "0.0.0.0" || config.server.host === "" ? "127.0.0.1" : config.server.host === "::" ? "::1" : config.server.host;
  return `http://${host.includes(":") ? `[${host}]` : host}:${config.server.port}`;
}

async function askServer(url: string, apiKey: string | undefined): Promise<Report["server"]> {
  const headers: Record<string, string> = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  const health = await getJson(`${url}/health`, headers);
  if (!health.ok) return { url, reachable: false, error: health.error };
  // With API_KEY set on the server, /health tells a caller without it only `{status}`.
  const bare = bareStatus.safeParse(health.body);
  if (bare.success) return { url, reachable: true, needsKey: bare.data.status, error: "/health shows its details only with the API key" };
  const parsedHealth = healthSchema.safeParse(health.body);
  if (!parsedHealth.success) return { url, reachable: false, error: "it answered /health, but not as a DiffuGen server" };

  const stats = await getJson(`${url}/stats`, headers);
  let statsError: string | undefined;
  let parsedStats: Stats | undefined;
  if (stats.ok) {
    const result = statsSchema.safeParse(stats.body);
    if (result.success) parsedStats = result.data;
    else statsError = "/stats answered in an unknown shape";
  } else if (stats.status !== 404) {
    // 404: a server from before /stats; /health says enough.
    statsError = stats.status === 401 ? "/stats needs the API key: set API_KEY" : `/stats: ${stats.error}`;
  }
  return { url, reachable: true, health: parsedHealth.data, stats: parsedStats, statsError };
}

type JsonAnswer = { ok: true; body: unknown } | { ok: false; status?: number; error: string };

async function getJson(url: string, headers: Record<string, string>): Promise<JsonAnswer> {
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(requestTimeoutMs) });
    if (!res.ok) {
      await res.body?.cancel();
      return { ok: false, status: res.status, error: `HTTP ${res.status}` };
    }
    return { ok: true, body: await res.json() };
  } catch (err) {
    return { ok: false, error: errorText(err) };
  }
}

/** "connection refused" rather than fetch's bare "fetch failed". */
function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err.name === "TimeoutError") return `no answer within ${requestTimeoutMs / 1000} s`;
  const cause = err.cause as { code?: string; message?: string } | undefined;
  if (cause?.code === "ECONNREFUSED") return "connection refused";
  if (cause?.code) return `${cause.code}${cause.message ? `: ${cause.message}` : ""}`;
  return err.message;
}

function fromHealth(model: Health["models"][number]): ModelFiles {
  return {
    name: model.name,
    ready: model.available,
    missing: model.files.filter((f) => !f.present).map(({ role, path }) => ({ role, path })),
  };
}

function localModels(config: Config): ModelFiles[] {
  const registry = new ModelRegistry({
    modelsDir: config.sd.modelsDir,
    defaultModel: config.sd.defaultModel,
    modelsConfig: config.sd.modelsConfig,
  });
  return registry.list().map((entry) => {
    const missing = registry.missingFiles(entry).map(({ role, path }) => ({ role, path }));
    return { name: entry.name, ready: missing.length === 0, missing };
  });
}

// ------------------------------------------------------------------ plain text

function render(report: Report): string {
  const out: string[] = [];
  const { server } = report;
  if (server.reachable && server.health) {
    out.push(...renderServer(server.url, server.health, server.stats, server.statsError));
  } else if (server.needsKey !== undefined) {
    out.push(`DiffuGen server at ${server.url}: ${server.needsKey} (the rest only with its API key: set API_KEY)`);
  } else {
    out.push(`No DiffuGen server answers at ${server.url} (${server.error}).`);
    if (report.direct) out.push(...renderDirect(report.direct));
  }
  out.push("", ...renderModels(report.models));
  if (report.nextSteps.length > 0) out.push("", "Next:", ...renderSteps(report.nextSteps));
  return `${out.join("\n")}\n`;
}

function renderServer(url: string, health: Health, stats: Stats | undefined, statsError: string | undefined): string[] {
  const out: string[] = [];
  const uptime = stats?.uptime_seconds === undefined ? "" : `, up ${formatUptime(stats.uptime_seconds)}`;
  out.push(`DiffuGen server at ${url}: ${health.status}${health.scheduler.closing ? " (shutting down)" : ""}${uptime}`);
  const { sd, ollama } = health;
  out.push(
    sd.found
      ? `  sd-cli: ${sd.version ?? `version unknown${sd.versionError ? ` (${sd.versionError})` : ""}`} (${sd.path ?? sd.bin})`
      : `  sd-cli: not found (${sd.bin})`,
  );
  out.push(
    ollama.reachable
      ? `  Ollama${ollama.version ? ` ${ollama.version}` : ""} at ${ollama.baseUrl}, LLM ${ollama.model}${ollama.error ? ` (${ollama.error})` : ""}`
      : `  Ollama at ${ollama.baseUrl}: not reachable${ollama.error ? ` (${ollama.error})` : ""}`,
  );

  out.push("", `GPU: ${describeHolder(health.scheduler.gpu)}; LLM ${health.scheduler.llm}`);
  const gpu = stats?.gpu;
  if (gpu) {
    const parts = [
      gpu.swaps === undefined ? undefined : gpu.swaps === 0 ? "no swaps yet" : `${gpu.swaps} swap${gpu.swaps === 1 ? "" : "s"} (LLM out for drawing, then back)`,
      meanText("unload", gpu.unload),
      meanText("reload", gpu.reload),
      (gpu.unload_failures ?? 0) + (gpu.reload_failures ?? 0) > 0
        ? `failures: ${gpu.unload_failures ?? 0} unload, ${gpu.reload_failures ?? 0} reload`
        : undefined,
    ].filter((p) => p !== undefined);
    if (parts.length > 0) out.push(`  ${parts.join("; ")}`);
  }
  if (stats?.vram) out.push(...renderVram(stats.vram));
  out.push(...renderResident(ollama.resident, ollama.residentError));
  if (health.gate && health.gate.bypasses > 0) out.push(renderGate(url, health.gate));

  const queued = stats?.queue?.jobs;
  const length = queued?.length ?? health.scheduler.queue.length;
  out.push("", `Queue: ${length === 0 ? "empty" : `${length} waiting for the GPU`}`);
  if (queued) {
    for (const job of queued) {
      out.push(`  ${job.position ?? "-"}. ${job.job_id}  ${job.phase}${job.waiting_ms === undefined ? "" : `  waiting ${formatMs(job.waiting_ms)}`}`);
    }
  } else {
    health.scheduler.queue.forEach((job, i) => out.push(`  ${i + 1}. ${job.jobId}  ${job.phase}`));
  }
  const running = stats?.jobs?.running ?? health.jobs?.active;
  if (running !== undefined) {
    const started = stats?.jobs?.started === undefined ? "" : `, ${stats.jobs.started} since start`;
    const images = stats?.images === undefined ? "" : `, ${stats.images} image${stats.images === 1 ? "" : "s"} made`;
    const failed = stats?.failures ? `, ${stats.failures} failed` : "";
    out.push(`Jobs: ${running} running${started}${images}${failed}`);
  }
  const perStep = Object.entries(stats?.seconds_per_step ?? {});
  if (perStep.length > 0) {
    out.push(`Seconds per step: ${perStep.map(([model, m]) => `${model} ${m.mean.toFixed(2)} s (${m.samples} run${m.samples === 1 ? "" : "s"})`).join(", ")}`);
  }
  if (statsError) out.push(`(no statistics: ${statsError})`);
  return out;
}

/** The VRAM ledger: the policy, the card as last read, the swaps it avoided. */
function renderVram(vram: NonNullable<Stats["vram"]>): string[] {
  const gb = (mib: number) => (mib / 1024).toFixed(1);
  if (vram.policy !== "fit") return ["  VRAM policy: swap (the LLM leaves VRAM for every drawing; no memory tool, or VRAM_POLICY=swap)"];
  const out = [`  VRAM policy: fit (${vram.swaps_avoided ?? 0} swap${vram.swaps_avoided === 1 ? "" : "s"} avoided)`];
  const card = vram.card;
  if (card) {
    out.push(`  VRAM: ${gb(card.total_mib - card.free_mib)} of ${gb(card.total_mib)} GB used (LLMs ${gb(card.llm_mib)} GB, other ${gb(card.other_mib)} GB), ${gb(card.free_mib)} GB free`);
  }
  if (vram.last_decision) out.push(`  last drawing: ${vram.last_decision}`);
  return out;
}

/** Models loaded in Ollama while diffusion ran: a client bypasses DiffuGen; what to point it at. */
function renderGate(url: string, gate: NonNullable<Health["gate"]>): string {
  const n = gate.bypasses;
  const last = gate.last ? ` (last ${gate.last.model}, ${formatUptime(Math.max(0, (Date.now() - Date.parse(gate.last.at)) / 1000))} ago)` : "";
  return `  Gate: ${n} model load${n === 1 ? "" : "s"} behind DiffuGen's back while drawing${last}; set that client's Ollama URL to ${url}/ollama`;
}

function renderDirect(direct: NonNullable<Report["direct"]>): string[] {
  const { ollama, freeVramMiB, sd } = direct;
  const out: string[] = ["Read directly instead:"];
  if (ollama.reachable) {
    out.push(...renderResident(ollama.resident, undefined, `Ollama at ${ollama.baseUrl}`));
    if (ollama.modelInstalled === false) out.push(`LLM ${ollama.model}: not installed in Ollama`);
  } else out.push(`Ollama at ${ollama.baseUrl}: not reachable (${ollama.error})`);
  out.push(
    !sd.found
      ? `sd-cli: not found (SD_CPP_BIN=${sd.bin})`
      : sd.version !== null
        ? `sd-cli: ${sd.version} (${sd.path ?? sd.bin})`
        : `sd-cli: ${sd.path ?? sd.bin} does not run${sd.versionError ? ` (${sd.versionError})` : ""}`,
  );
  out.push(
    freeVramMiB === undefined
      ? "Free VRAM: unknown (no nvidia-smi; set NVIDIA_SMI to its path)"
      : `Free VRAM: ${formatBytes(freeVramMiB * 1024 * 1024)} (${freeVramMiB} MiB, nvidia-smi)`,
  );
  return out;
}

type ResidentShown = Pick<ResidentModel, "name" | "sizeBytes" | "sizeVramBytes" | "fullyOnGpu">;

function renderResident(resident: ResidentShown[] | null, error: string | undefined, where = "Ollama"): string[] {
  if (resident === null) return [`${where}: resident models unknown${error ? ` (${error})` : ""}`];
  if (resident.length === 0) return [`${where}: nothing resident in VRAM`];
  const width = Math.max(...resident.map((m) => m.name.length));
  return [
    `${where}: resident in VRAM`,
    ...resident.map((m) => {
      const placement =
        m.fullyOnGpu || m.sizeBytes === 0
          ? "all on the GPU"
          : `${Math.round((100 * m.sizeVramBytes) / m.sizeBytes)}% on the GPU, the rest on the CPU`;
      return `  ${m.name.padEnd(width)}  ${formatBytes(m.sizeVramBytes)} of VRAM, ${placement}`;
    }),
  ];
}

function renderModels(models: Report["models"]): string[] {
  const ready = models.list.filter((m) => m.ready).length;
  const from = models.source === "server" ? "on the server" : `in ${models.modelsDir}`;
  const out = [`Models ${from}: ${ready} of ${models.list.length} ready`];
  const incomplete = models.list.filter((m) => !m.ready);
  if (incomplete.length === 0) return out;
  out.push("Missing files:");
  for (const model of incomplete) {
    for (const file of model.missing) out.push(`  ${model.name}  ${file.role}  ${file.path}`);
  }
  out.push(`Fetch a model's missing files with: ${cliCommand()} models pull <name>`);
  return out;
}

/** Who holds the GPU, from /health's scheduler state. */
function describeHolder(holder: { kind: string; jobId?: string | undefined; jobIds?: string[] | undefined }): string {
  if (holder.kind === "diffusion") return `drawing${holder.jobId ? ` (${holder.jobId})` : ""}`;
  if (holder.kind === "llm") {
    const n = holder.jobIds?.length ?? 0;
    return `the LLM is working${n > 0 ? ` for ${n} job${n === 1 ? "" : "s"}` : ""}`;
  }
  return holder.kind;
}

function meanText(what: string, mean: { count?: number | undefined; mean_ms?: number | undefined } | undefined): string | undefined {
  if (!mean?.count) return undefined;
  return `${what} ${formatMs(mean.mean_ms ?? 0)} on average (${mean.count})`;
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function formatUptime(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s} s` : `${s} s`;
}
