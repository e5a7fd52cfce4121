import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { builtinModels, defaultModelAliases } from "./builtin-models.js";
import {
  fileFlags,
  modelEntrySchema,
  type ModelEntry,
  type ModelEntryInput,
  type ModelFile,
  type ModelFileRole,
} from "./model-entry.js";

export class UnknownModelError extends Error {
  constructor(
    readonly requested: string,
    readonly known: string[],
  ) {
    super(`Unknown model '${requested}'. Known models: ${known.join(", ")}`);
    this.name = "UnknownModelError";
  }
}

export class ModelFilesMissingError extends Error {
  constructor(
    readonly model: string,
    readonly missing: ModelFile[],
  ) {
    super(
      `Model '${model}' is missing ${missing.length === 1 ? "a file" : "files"}: ` +
        missing.map((f) => `${f.role} (${f.flag}) at ${f.path}`).join("; "),
    );
    this.name = "ModelFilesMissingError";
  }
}

export class ModelsConfigError extends Error {
  constructor(file: string, detail: string) {
    super(`MODELS_CONFIG ${file}: ${detail}`);
    this.name = "ModelsConfigError";
  }
}

/**
 * MODELS_CONFIG file: `{ "models": [entry, ...] }` or a bare array. An entry whose name
 * matches a built-in one replaces it field by field (so `{ "name": "sdxl", "files": {...} }`
 * only swaps the files).
 */
const modelsConfigSchema = z.union([
  z.object({ models: z.array(z.record(z.string(), z.unknown())) }),
  z.array(z.record(z.string(), z.unknown())),
]);

export interface RegistryOptions {
  modelsDir: string;
  /** Registry name (or alias) that `dall-e-3`, `default`... resolve to. */
  defaultModel: string;
  modelsConfig?: string | undefined;
}

export class ModelRegistry {
  private readonly entries = new Map<string, ModelEntry>();
  private readonly aliases = new Map<string, string>();

  constructor(private readonly options: RegistryOptions) {
    const inputs = new Map<string, ModelEntryInput>(builtinModels.map((m) => [m.name, m]));
    if (options.modelsConfig) {
      for (const override of readModelsConfig(options.modelsConfig)) {
        const name = String(override.name ?? "");
        const base = inputs.get(name);
        inputs.set(name, (base ? mergeEntry(base, override) : override) as ModelEntryInput);
      }
    }
    for (const input of inputs.values()) {
      const parsed = modelEntrySchema.safeParse(input);
      if (!parsed.success) {
        const where = options.modelsConfig ?? "built-in models";
        throw new ModelsConfigError(
          where,
          `entry '${String(input.name)}': ` +
            parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
        );
      }
      this.entries.set(parsed.data.name, parsed.data);
    }
    for (const entry of this.entries.values()) {
      for (const alias of entry.aliases) this.aliases.set(alias.toLowerCase(), entry.name);
    }
    if (!this.find(options.defaultModel)) {
      throw new ModelsConfigError(
        "DEFAULT_IMAGE_MODEL",
        `'${options.defaultModel}' is not a known model (${this.names().join(", ")})`,
      );
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  list(): ModelEntry[] {
    return [...this.entries.values()];
  }

  /** The entry for a name or alias (case-insensitive), or undefined. */
  find(nameOrAlias: string): ModelEntry | undefined {
    const key = nameOrAlias.trim().toLowerCase();
    if (defaultModelAliases.includes(key) && key !== this.options.defaultModel.toLowerCase()) {
      return this.find(this.options.defaultModel);
    }
    const direct = [...this.entries.values()].find((e) => e.name.toLowerCase() === key);
    if (direct) return direct;
    const aliased = this.aliases.get(key);
    return aliased ? this.entries.get(aliased) : undefined;
  }

  /** Like find, but throws UnknownModelError; no name means the configured default. */
  resolve(nameOrAlias?: string): ModelEntry {
    const entry = this.find(nameOrAlias ?? this.options.defaultModel);
    if (!entry) throw new UnknownModelError(nameOrAlias ?? "", this.names());
    return entry;
  }

  /** The entry's files as absolute paths, in a stable order (model files first). */
  files(entry: ModelEntry): ModelFile[] {
    return (Object.keys(fileFlags) as ModelFileRole[]).flatMap((role) => {
      const file = entry.files[role];
      return file
        ? [{ role, flag: fileFlags[role], path: path.resolve(this.options.modelsDir, file) }]
        : [];
    });
  }

  missingFiles(entry: ModelEntry): ModelFile[] {
    return this.files(entry).filter((f) => !existsSync(f.path));
  }

  /** Throws ModelFilesMissingError unless every file of the model is on disk. */
  assertFilesPresent(entry: ModelEntry): ModelFile[] {
    const missing = this.missingFiles(entry);
    if (missing.length > 0) throw new ModelFilesMissingError(entry.name, missing);
    return this.files(entry);
  }
}

function readModelsConfig(file: string): Record<string, unknown>[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new ModelsConfigError(file, (err as Error).message);
  }
  const parsed = modelsConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ModelsConfigError(file, 'expected { "models": [ ... ] } or an array of model entries');
  }
  return Array.isArray(parsed.data) ? parsed.data : parsed.data.models;
}

function mergeEntry(base: ModelEntryInput, override: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...base, ...override };
  for (const key of ["files", "defaults", "limits"] as const) {
    const over = override[key];
    if (over && typeof over === "object") merged[key] = { ...(base[key] ?? {}), ...over };
  }
  return merged;
}
