import { Hono } from "hono";
import { locateExecutable } from "../../config/index.js";
import { sdCliVersion } from "../../diffusion/index.js";
import type { GateStatus } from "../../gpu/index.js";
import { checkOllama, OllamaProbe, type ResidentModel } from "../../llm/index.js";
import { apiKeyCheck } from "../auth.js";
import type { AppEnv, ServerContext } from "../server-context.js";

/** Each Ollama request of a health check gives up after this long. */
const ollamaTimeoutMs = 2_000;

/**
 * GET /health (open, no API key): is this server able to chat and draw right now?
 * Always 200 while the process serves (a liveness check); `status` says `ok` when Ollama
 * answers and the program that draws is found (sd-cli, or sd-server with SD_BACKEND),
 * `degraded` otherwise. With API_KEY set, a request without the key gets `{status}` alone:
 * paths, versions and model files tell a stranger too much about the box. With the key (or
 * none set) come the details: Ollama's version,
 * the models it holds in memory now (/api/ps), sd-cli's `--version` line (run once and
 * cached), the backend setting, which one drew last and the burst's sd-server (model, pid,
 * port) while one is up, every registry model with its files and whether each is on disk, what the
 * GPU scheduler is doing, and the gate: how many models a client loaded in Ollama behind
 * DiffuGen's back while diffusion held the GPU (the bypass watchdog), and the last one.
 */
export function healthRoutes(ctx: ServerContext) {
  const { config, registry, scheduler, sdEnv, backends } = ctx.deps;
  // A probe, not the scheduler's residency: /health reads /api/ps and can unload nothing.
  const ollamaProbe = new OllamaProbe(config.llm, { requestTimeoutMs: ollamaTimeoutMs });
  const key = apiKeyCheck(ctx.options.apiKey);
  return new Hono<AppEnv>().get("/", async (c) => {
    const verdict = key(c);
    const detailed = verdict === "open" || verdict === "valid";
    const signal = c.var.clientSignal;
    const sdPath = locateExecutable(config.sd.bin);
    const serverPath = config.sd.backend === "cli" ? undefined : locateExecutable(config.sd.serverBin);
    const [ollama, resident, sdVersion] = await Promise.all([
      checkOllama(config.llm, { timeoutMs: ollamaTimeoutMs, signal }),
      ollamaProbe.listResident(signal).then(
        (models): { models: ResidentModel[] | null; error?: string } => ({ models }),
        (err: unknown) => ({ models: null, error: err instanceof Error ? err.message : String(err) }),
      ),
      sdPath === undefined ? Promise.resolve(undefined) : sdCliVersion(config.sd.bin, sdEnv),
    ]);
    const models = registry.list().map((entry) => {
      const missing = new Set(registry.missingFiles(entry).map((f) => f.path));
      return {
        name: entry.name,
        available: missing.size === 0,
        files: registry.files(entry).map((f) => ({ role: f.role, path: f.path, present: !missing.has(f.path) })),
      };
    });
    // Drawing works when the program SD_BACKEND asks for is there (auto: either one).
    const canDraw = config.sd.backend === "server" ? serverPath !== undefined : sdPath !== undefined || serverPath !== undefined;
    const ok = ollama.reachable && canDraw;
    if (!detailed) return c.json({ status: ok ? "ok" : "degraded" });
    const backend = backends.health();
    return c.json({
      status: ok ? "ok" : "degraded",
      ok,
      ollama: {
        ...ollama,
        resident: resident.models,
        ...(resident.error === undefined ? {} : { residentError: resident.error }),
      },
      sd: {
        bin: config.sd.bin,
        found: sdPath !== undefined,
        path: sdPath ?? null,
        version: sdVersion?.version ?? null,
        ...(sdVersion?.error === undefined ? {} : { versionError: sdVersion.error }),
        backend: backend.setting,
        lastBackend: backend.lastBackend ?? null,
        server: {
          bin: config.sd.serverBin,
          found: serverPath !== undefined,
          path: serverPath ?? null,
          // The sd-server kept for the current burst, if one is up.
          running: backend.server ? { model: backend.server.model, pid: backend.server.pid ?? null, port: backend.server.port, state: backend.server.state, jobs: backend.server.jobs } : null,
        },
      },
      models,
      scheduler: scheduler.state(),
      // The VRAM ledger (VRAM_POLICY=fit), read now; `swap` without one.
      vram: ctx.deps.vram
        ? { policy: "fit", marginMiB: ctx.deps.vram.marginMiB, card: (await ctx.deps.vram.read(signal).catch(() => undefined)) ?? null }
        : { policy: "swap", card: null },
      jobs: { active: ctx.runner.activeJobs },
      gate: gateView(ctx.gate?.status()),
    });
  });
}

/** The gate as /health shows it; null when no watchdog runs (an app built without bootstrap). */
function gateView(status: GateStatus | undefined) {
  if (status === undefined) return null;
  const { last } = status;
  return {
    bypasses: status.bypasses,
    last: last ? { model: last.model, at: new Date(last.at).toISOString(), jobId: last.jobId } : null,
    watching: status.watching,
  };
}
