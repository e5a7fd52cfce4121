import { readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { fileFlags, type ModelEntry, type ModelFileRole } from "../models/index.js";

/**
 * Where the files of the built-in models can be fetched from, by model name and file role
 * (the roles and file names of src/models/builtin-models.ts). Public Hugging Face URLs, the
 * ones stable-diffusion.cpp's docs point to (docs/sd.md, docs/flux.md); `resolve/main/...` is
 * the download form of a `blob/main/...` page. A sha256 and size are given only where several
 * independent sources agree on them; the others are checked by size only (Content-Length).
 *
 * `gated`: the repository asks a logged-in account to accept its licence first; the download
 * then needs HF_TOKEN (see hugging-face.ts).
 *
 * MODELS_CONFIG entries may add or replace sources with an optional `sources` field next to
 * `files` (the registry ignores it; loadModelSources reads it):
 *
 *   { "name": "my-flux", ..., "files": { "diffusionModel": "my-flux.gguf", ... },
 *     "sources": { "diffusionModel": { "url": "https://...", "sha256": "..." },
 *                  "vae": "https://.../ae.safetensors" } }
 */

export interface FileSource {
  url: string;
  sha256?: string | undefined;
  sizeBytes?: number | undefined;
  gated?: boolean | undefined;
}

export type ModelSources = Record<string, Partial<Record<ModelFileRole, FileSource>>>;

const HF = "https://huggingface.co";

// Shared by both Flux models (and by any MODELS_CONFIG entry that uses the same file names).
const fluxVae: FileSource = { url: `${HF}/black-forest-labs/FLUX.1-schnell/resolve/main/ae.safetensors`, gated: true };
const fluxClipL: FileSource = { url: `${HF}/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors` };
const fluxT5xxl: FileSource = { url: `${HF}/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors` };

export const builtinModelSources: ModelSources = {
  sd15: {
    // runwayml/stable-diffusion-v1-5 (the URL in sd.cpp's docs) was taken down; this is its official re-upload.
    model: {
      url: `${HF}/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/v1-5-pruned-emaonly.safetensors`,
      sha256: "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
      sizeBytes: 4_265_146_304,
    },
  },
  sdxl: {
    model: {
      url: `${HF}/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors`,
      sha256: "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b",
      sizeBytes: 6_938_078_334,
    },
    // The fp16-fixed SDXL VAE sd.cpp's docs ask for (the original one gives NaNs in fp16).
    vae: { url: `${HF}/madebyollin/sdxl-vae-fp16-fix/resolve/main/sdxl_vae.safetensors` },
  },
  sd3: {
    model: {
      url: `${HF}/stabilityai/stable-diffusion-3-medium/resolve/main/sd3_medium_incl_clips_t5xxlfp16.safetensors`,
      gated: true,
    },
  },
  "flux-schnell": {
    diffusionModel: { url: `${HF}/leejet/FLUX.1-schnell-gguf/resolve/main/flux1-schnell-q8_0.gguf` },
    vae: fluxVae,
    clipL: fluxClipL,
    t5xxl: fluxT5xxl,
  },
  "flux-dev": {
    diffusionModel: { url: `${HF}/leejet/FLUX.1-dev-gguf/resolve/main/flux1-dev-q8_0.gguf`, gated: true },
    vae: fluxVae,
    clipL: fluxClipL,
    t5xxl: fluxT5xxl,
  },
};

export class ModelSourcesError extends Error {
  constructor(file: string, detail: string) {
    super(`MODELS_CONFIG ${file}: ${detail}`);
    this.name = "ModelSourcesError";
  }
}

const sha256Schema = z.string().regex(/^[0-9a-fA-F]{64}$/, "64 hex digits");
const sourceSchema = z.union([
  z.url().transform((url): FileSource => ({ url })),
  z.object({
    url: z.url(),
    sha256: sha256Schema.optional(),
    sizeBytes: z.number().int().positive().optional(),
    gated: z.boolean().optional(),
  }),
]);
const roleNames = Object.keys(fileFlags) as [ModelFileRole, ...ModelFileRole[]];
const sourcesSchema = z.partialRecord(z.enum(roleNames), sourceSchema);

export interface SourceCatalog {
  /** Sources given by MODELS_CONFIG, by model name and role: these win. */
  configured: ModelSources;
  /** Built-in sources by file name, so any entry using `ae.safetensors` etc. finds one. */
  byFileName: Map<string, FileSource>;
}

/** Built-in sources plus the `sources` of MODELS_CONFIG entries (if any). */
export function loadModelSources(modelsConfig?: string, builtins: ModelSources = builtinModelSources): SourceCatalog {
  const byFileName = new Map<string, FileSource>();
  for (const roles of Object.values(builtins)) {
    for (const source of Object.values(roles)) {
      if (source) byFileName.set(fileNameOf(source.url), source);
    }
  }
  return { configured: modelsConfig ? readConfiguredSources(modelsConfig) : {}, byFileName };
}

/** Where a file of an entry comes from: its MODELS_CONFIG source, else a built-in one for the same file name. */
export function sourceFor(catalog: SourceCatalog, entry: ModelEntry, role: ModelFileRole): FileSource | undefined {
  const configured = catalog.configured[entry.name]?.[role];
  if (configured) return configured;
  const file = entry.files[role];
  return file ? catalog.byFileName.get(path.basename(file)) : undefined;
}

function readConfiguredSources(file: string): ModelSources {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new ModelSourcesError(file, (err as Error).message);
  }
  const entries = Array.isArray(raw) ? raw : (raw as { models?: unknown } | null)?.models;
  if (!Array.isArray(entries)) return {};
  const result: ModelSources = {};
  for (const entry of entries) {
    if (!entry || typeof entry !== "object") continue;
    const { name, sources } = entry as { name?: unknown; sources?: unknown };
    if (sources === undefined) continue;
    const parsed = sourcesSchema.safeParse(sources);
    if (!parsed.success) {
      throw new ModelSourcesError(
        file,
        `entry '${String(name)}': sources: ` +
          parsed.error.issues.map((i) => `${i.path.join(".") || "(sources)"}: ${i.message}`).join("; "),
      );
    }
    result[String(name)] = parsed.data;
  }
  return result;
}

function fileNameOf(url: string): string {
  return decodeURIComponent(path.posix.basename(new URL(url).pathname));
}
