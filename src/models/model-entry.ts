import { z } from "zod";

/**
 * An image model as sd.cpp needs it: which files, passed with which flags, and the
 * defaults and limits that suit it. Entries are data so MODELS_CONFIG can add or
 * override them without code.
 */

/** Families decide prompt style (tags vs sentences) and sensible defaults. */
export const modelFamilies = ["sd1", "sdxl", "sd3", "flux"] as const;
export type ModelFamily = (typeof modelFamilies)[number];

/** Each file role maps to exactly one sd-cli flag. */
export const fileFlags = {
  model: "-m",
  diffusionModel: "--diffusion-model",
  vae: "--vae",
  clipL: "--clip_l",
  clipG: "--clip_g",
  t5xxl: "--t5xxl",
  llm: "--llm",
  taesd: "--taesd",
} as const;
export type ModelFileRole = keyof typeof fileFlags;

const fileRoleSchema = z.enum(Object.keys(fileFlags) as [ModelFileRole, ...ModelFileRole[]]);

export const modelEntrySchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/i, "letters, digits, '.', '_' or '-'"),
    family: z.enum(modelFamilies),
    description: z.string().default(""),
    /** File names relative to MODELS_DIR (or absolute paths), by role. */
    files: z.partialRecord(fileRoleSchema, z.string().min(1)),
    aliases: z.array(z.string()).default([]),
    defaults: z.object({
      steps: z.number().int().min(1).max(150),
      cfgScale: z.number().min(0).max(30),
      guidance: z.number().min(0).max(30).optional(),
      samplingMethod: z.string(),
      scheduler: z.string().optional(),
      width: z.number().int().min(64).max(4096),
      height: z.number().int().min(64).max(4096),
    }),
    limits: z
      .object({
        minSize: z.number().int().min(64).default(64),
        maxSize: z.number().int().max(4096).default(2048),
        maxSteps: z.number().int().max(150).default(150),
      })
      .prefault({}),
  })
  .refine((e) => e.files.model !== undefined || e.files.diffusionModel !== undefined, {
    message: "a model needs files.model or files.diffusionModel",
    path: ["files"],
  });

export type ModelEntry = z.infer<typeof modelEntrySchema>;
export type ModelEntryInput = z.input<typeof modelEntrySchema>;

/** One file of a model, resolved to an absolute path. */
export interface ModelFile {
  role: ModelFileRole;
  flag: (typeof fileFlags)[ModelFileRole];
  path: string;
}
