import { existsSync, statSync } from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import type { Command } from "commander";
import type { Config } from "../config/index.js";
import { ModelRegistry, type ModelEntry } from "../models/index.js";
import {
  createDownloadDisplay,
  DownloadAbortedError,
  formatBytes,
  hfEnv,
  loadModelSources,
  modelFileStatus,
  ModelSourcesError,
  pullModel,
  PullError,
  type HfEnv,
  type ModelFileStatus,
  type SourceCatalog,
} from "../setup/index.js";
import { interruptSignal } from "./interrupt.js";
import { cliCommand } from "./cli-command.js";

/**
 * `diffugen models`: the registry's models, each file with its role, path, whether it is on
 * disk (✓ / missing) and where a missing one comes from.
 * `diffugen models pull NAME...`: fetches a model's missing files into MODELS_DIR, with a
 * progress bar, resume (a `.part` left by an interrupted pull is continued) and checksums.
 *
 * Reads MODELS_DIR, MODELS_CONFIG (and its optional per-entry `sources`), DEFAULT_IMAGE_MODEL
 * through Config, and HF_TOKEN / HF_ENDPOINT from the environment (src/setup/hugging-face.ts).
 */

interface ListOptions {
  json?: boolean;
}

export function registerModelsCommand(program: Command, loadConfig: () => Config): void {
  const list = async (options: ListOptions) => {
    process.exitCode = listModels(loadConfig(), options);
  };
  const models = program
    .command("models")
    .description("list the image models, their files and whether each is on disk; `models pull NAME` fetches them")
    .option("--json", "print the list as JSON")
    .action(list);
  models.command("list").description("list the image models and their files (the default)").option("--json", "print as JSON").action(list);
  models
    .command("pull")
    .description("download the missing files of one or more models into MODELS_DIR (resumable, verified)")
    .argument("<names...>", "model names or aliases: sd15, sdxl, sd3, flux-schnell, flux-dev, ...")
    .option("--retries <n>", "extra attempts after a broken connection or a server error", "3")
    .action(async (names: string[], options: { retries: string }) => {
      process.exitCode = await pullModels(names, loadConfig(), options);
    });
}

/** The registry and where its files come from; a bad `sources` entry is a usage error (its exit code). */
function openCatalog(config: Config): { registry: ModelRegistry; catalog: SourceCatalog } | number {
  const registry = new ModelRegistry({
    modelsDir: config.sd.modelsDir,
    defaultModel: config.sd.defaultModel,
    modelsConfig: config.sd.modelsConfig,
  });
  try {
    return { registry, catalog: loadModelSources(config.sd.modelsConfig) };
  } catch (err) {
    if (err instanceof ModelSourcesError) return usageError(err.message);
    throw err;
  }
}

function listModels(config: Config, options: ListOptions): number {
  const opened = openCatalog(config);
  if (typeof opened === "number") return opened;
  const { registry, catalog } = opened;
  const hf = hfEnv();
  const rows = registry.list().map((entry) => ({ entry, files: modelFileStatus(registry, entry, catalog, hf) }));

  if (options.json) {
    const json = rows.map(({ entry, files }) => ({
      name: entry.name,
      family: entry.family,
      description: entry.description,
      default: entry.name === registry.resolve().name,
      ready: files.every((f) => f.present),
      files: files.map((f) => ({
        role: f.role,
        path: f.path,
        present: f.present,
        url: f.url ?? null,
        sha256: f.source?.sha256 ?? null,
        sizeBytes: f.source?.sizeBytes ?? null,
        gated: f.source?.gated ?? false,
      })),
    }));
    process.stdout.write(`${JSON.stringify({ modelsDir: config.sd.modelsDir, models: json }, null, 2)}\n`);
    return 0;
  }

  const out: string[] = [`Models in ${config.sd.modelsDir}:`, ""];
  const defaultName = registry.resolve().name;
  const roleWidth = Math.max(...rows.flatMap((r) => r.files.map((f) => f.role.length)));
  for (const { entry, files } of rows) {
    const missing = files.filter((f) => !f.present).length;
    const state = missing === 0 ? "ready" : `${missing} of ${files.length} file${files.length === 1 ? "" : "s"} missing`;
    out.push(`${entry.name}${entry.name === defaultName ? " (default)" : ""}: ${entry.description || entry.family}, ${state}`);
    for (const file of files) {
      out.push(`  ${file.present ? "✓      " : "missing"}  ${file.role.padEnd(roleWidth)}  ${file.path}`);
      if (!file.present) out.push(...whereFrom(file, hf));
    }
    out.push("");
  }
  if (rows.some((r) => r.files.some((f) => !f.present))) {
    out.push(`Fetch a model's missing files with: ${cliCommand()} models pull <name>`);
  }
  process.stdout.write(`${out.join("\n")}\n`);
  return 0;
}

function whereFrom(file: ModelFileStatus, hf: HfEnv): string[] {
  const pad = "           ";
  const lines: string[] = [];
  if (!file.source || !file.url) {
    lines.push(`${pad}no known source: add "sources" to this entry in MODELS_CONFIG, or put the file there`);
    return lines;
  }
  const notes = [
    file.source.sizeBytes !== undefined ? formatBytes(file.source.sizeBytes) : undefined,
    file.source.sha256 ? "sha256 checked" : undefined,
    file.source.gated ? (hf.token ? "gated: HF_TOKEN is set" : "gated: needs HF_TOKEN") : undefined,
  ].filter((n) => n !== undefined);
  lines.push(`${pad}from ${file.url}${notes.length > 0 ? ` (${notes.join(", ")})` : ""}`);
  const partial = partialSize(file.path);
  if (partial !== undefined) lines.push(`${pad}partial download: ${formatBytes(partial)} in ${file.path}.part (pull resumes it)`);
  return lines;
}

async function pullModels(names: string[], config: Config, options: { retries: string }): Promise<number> {
  const retries = Number(options.retries);
  if (!Number.isInteger(retries) || retries < 0) return usageError(`--retries must be a whole number, got '${options.retries}'`);
  const opened = openCatalog(config);
  if (typeof opened === "number") return opened;
  const { registry, catalog } = opened;
  const entries: ModelEntry[] = [];
  for (const name of names) {
    const entry = registry.find(name);
    if (!entry) return usageError(`unknown model '${name}'. Known models: ${registry.names().join(", ")}`);
    if (!entries.includes(entry)) entries.push(entry);
  }

  const hf = hfEnv();
  const display = createDownloadDisplay();
  const interrupt = interruptSignal();
  try {
    await warnAboutDiskSpace(config.sd.modelsDir, entries, registry, catalog, hf, display.log.bind(display));
    for (const entry of entries) {
      const status = modelFileStatus(registry, entry, catalog, hf);
      const missing = status.filter((f) => !f.present).length;
      display.log(missing === 0 ? `${entry.name}: all files present` : `${entry.name}: fetching ${missing} file${missing === 1 ? "" : "s"} into ${config.sd.modelsDir}`);
      if (missing === 0) continue;
      await pullModel(registry, entry, catalog, {
        hf,
        signal: interrupt.signal,
        retries,
        reporter: {
          start: (file, index, count) => display.start(`[${index}/${count}] ${path.basename(file.path)}`),
          progress: (_file, received, total, rate) => display.update(received, total, rate),
          done: (file, result) =>
            display.finish(
              `saved ${file.path} (${formatBytes(result.bytes)}${file.source?.sha256 ? ", sha256 verified" : ""}` +
                `${result.resumedFrom > 0 ? `, resumed from ${formatBytes(result.resumedFrom)}` : ""})`,
            ),
          retry: (file, error, attempt, delayMs) =>
            display.log(`${path.basename(file.path)}: ${error.message}; retry ${attempt} in ${Math.round(delayMs / 1000)} s`),
        },
      });
      display.log(`${entry.name}: ready`);
    }
    return 0;
  } catch (err) {
    display.stop();
    if (err instanceof DownloadAbortedError) {
      process.stderr.write(
        err.received > 0
          ? `diffugen: interrupted; the partial download ${err.partPath} (${formatBytes(err.received)}) is kept: run the same command to resume\n`
          : "diffugen: interrupted\n",
      );
      return 130;
    }
    if (err instanceof PullError) {
      process.stderr.write(`diffugen: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    display.stop();
    interrupt.dispose();
  }
}

/** Says so up front when the known sizes of the files to fetch exceed the free space. */
async function warnAboutDiskSpace(
  modelsDir: string,
  entries: ModelEntry[],
  registry: ModelRegistry,
  catalog: SourceCatalog,
  hf: HfEnv,
  log: (message: string) => void,
): Promise<void> {
  const needed = new Map<string, number>();
  for (const entry of entries) {
    for (const file of modelFileStatus(registry, entry, catalog, hf)) {
      if (!file.present && file.source?.sizeBytes) needed.set(file.path, file.source.sizeBytes - (partialSize(file.path) ?? 0));
    }
  }
  const total = [...needed.values()].reduce((a, b) => a + b, 0);
  if (total === 0) return;
  let dir = modelsDir;
  while (!existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  try {
    const fs = await fsp.statfs(dir);
    const free = fs.bavail * fs.bsize;
    if (free < total) log(`warning: these downloads need at least ${formatBytes(total)} but ${dir} has ${formatBytes(free)} free`);
  } catch {
    // statfs is best effort
  }
}

function partialSize(file: string): number | undefined {
  try {
    return statSync(`${file}.part`).size;
  } catch {
    return undefined;
  }
}

function usageError(message: string): number {
  process.stderr.write(`diffugen: ${message}\n`);
  return 2;
}
