import { Hono } from "hono";
import { locateExecutable } from "../../jobs/index.js";
import { checkOllama } from "../../llm/index.js";
import type { AppEnv, ServerContext } from "../server-context.js";

/**
 * GET /health (open, no API key): is this server able to chat and draw right now?
 * Always 200 while the process serves (a liveness check); `status` says `ok` when Ollama
 * answers and sd-cli is found, `degraded` otherwise, with the details.
 */
export function healthRoutes(ctx: ServerContext) {
  return new Hono<AppEnv>().get("/", async (c) => {
    const { config, registry, scheduler } = ctx.deps;
    const ollama = await checkOllama(config.llm, { timeoutMs: 2_000, signal: c.var.clientSignal });
    const sdPath = locateExecutable(config.sd.bin);
    const models = registry.list().map((entry) => ({ name: entry.name, available: registry.missingFiles(entry).length === 0 }));
    const ok = ollama.reachable && sdPath !== undefined;
    return c.json({
      status: ok ? "ok" : "degraded",
      ok,
      ollama,
      sd: { bin: config.sd.bin, found: sdPath !== undefined, path: sdPath ?? null },
      models,
      scheduler: scheduler.state(),
      jobs: { active: ctx.runner.activeJobs },
    });
  });
}
