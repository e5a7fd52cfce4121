import { describe, expect, it } from "vitest";
import { z } from "zod";
import { generationRequestSchema } from "../../../src/diffusion/index.js";
import { ApiError, renamedParam } from "../../../src/server/errors.js";
import { field, option, paramNamesOf, requestOf, shapeOf } from "../../../src/server/fields/field-table.js";
import { openaiEditFields, openaiEditParams, openaiGenerationFields, openaiImageFields, openaiImageParams } from "../../../src/server/fields/openai-fields.js";
import { seedBody, seedFields, seedParams } from "../../../src/server/fields/seed-fields.js";
import { looseNumber } from "../../../src/server/http-input.js";

/**
 * One table per dialect: the body's schema, the mapping onto the generation request and
 * the error's `param` all come from it. These pin what clients see of it (field names,
 * the order fields are checked in, the names errors give back).
 */

describe("the OpenAI table", () => {
  it("names every generation field the way the hand-written map did", () => {
    expect(openaiImageParams).toEqual({
      model: "model",
      batchCount: "n",
      width: "size",
      height: "size",
      negativePrompt: "negative_prompt",
      steps: "steps",
      cfgScale: "cfg_scale",
      guidance: "guidance",
      seed: "seed",
      samplingMethod: "sampling_method",
      scheduler: "scheduler",
      vaeTiling: "vae_tiling",
      clipSkip: "clip_skip",
    });
    expect(openaiEditParams).toEqual({ ...openaiImageParams, strength: "strength", initImage: "image" });
    // A field no table knows keeps its own name; Object.prototype's members are no names.
    expect(renamedParam(openaiImageParams, "prompt")).toBe("prompt");
    expect(renamedParam(openaiImageParams, "constructor")).toBe("constructor");
  });

  it("keeps the body's fields in their order (the first bad one is the one reported)", () => {
    expect(Object.keys(shapeOf(openaiImageFields))).toEqual([
      "model", "n", "size", "quality", "response_format", "output_format", "background", "stream", "partial_images",
      "negative_prompt", "steps", "cfg_scale", "guidance", "seed", "sampling_method", "scheduler", "vae_tiling", "clip_skip", "refine",
    ]);
    // The upload is a file, read apart from the text fields.
    expect(Object.keys(shapeOf(openaiEditFields))).not.toContain("image");
    expect(Object.keys(shapeOf(openaiEditFields)).at(-1)).toBe("strength");
  });

  it("maps a body onto the generation request", () => {
    const body = z.object(shapeOf(openaiImageFields)).parse({
      model: "diffugen:sd15",
      n: "2",
      size: "128x64",
      quality: "hd",
      stream: "true",
      negative_prompt: "blur",
      steps: "20",
      cfg_scale: 6,
      seed: 7,
      sampling_method: "euler",
      vae_tiling: "true",
      refine: "false",
    });
    expect(requestOf(openaiImageFields, body)).toEqual({
      model: "sd15",
      batchCount: 2,
      width: 128,
      height: 64,
      negativePrompt: "blur",
      steps: "20",
      cfgScale: 6,
      guidance: undefined,
      seed: 7,
      samplingMethod: "euler",
      scheduler: undefined,
      vaeTiling: "true",
      clipSkip: undefined,
    });
    // `dall-e-3` is the registry's business; `diffugen` means the default.
    expect(requestOf(openaiImageFields, { model: "diffugen" })).toMatchObject({ model: undefined });
    expect(() => requestOf(openaiImageFields, { n: 9 })).toThrow(ApiError);
    expect(() => requestOf(openaiImageFields, { n: 9 })).toThrow("n must be between 1 and 8 on this server (got 9)");
  });

  it("a generation field added to the table is accepted, mapped and named in errors: one line", () => {
    // clip_skip was added so: its line in openaiGenerationFields is all the OpenAI routes needed.
    const body = z.object(shapeOf(openaiGenerationFields)).parse({ clip_skip: "2", steps: 3 });
    expect(requestOf(openaiGenerationFields, body)).toMatchObject({ clipSkip: "2", steps: 3 });
    expect(paramNamesOf(openaiGenerationFields)).toMatchObject({ clipSkip: "clip_skip", steps: "steps" });
    // Any other field works the same way: `denoise` stands for the next one.
    const table = { ...openaiGenerationFields, denoise: field(looseNumber.optional(), "strength") };
    expect(requestOf(table, z.object(shapeOf(table)).parse({ denoise: "0.4" }))).toMatchObject({ strength: "0.4" });
    expect(paramNamesOf(table)).toMatchObject({ strength: "denoise" });
  });
});

describe("the seed API's table", () => {
  it("renames what the original API spelled differently, and nothing else", () => {
    expect(seedParams).toEqual({
      prompt: "prompt",
      model: "model",
      width: "width",
      height: "height",
      steps: "steps",
      cfgScale: "cfg_scale",
      seed: "seed",
      samplingMethod: "sampling_method",
      scheduler: "scheduler",
      negativePrompt: "negative_prompt",
      clipSkip: "clip_skip",
    });
    expect(Object.keys(seedBody.shape)).toEqual([
      "prompt", "model", "width", "height", "steps", "cfg_scale", "seed", "sampling_method", "scheduler", "negative_prompt", "clip_skip", "refine",
    ]);
  });

  it("takes Pydantic's nulls and its own ranges, and maps onto the generation request", () => {
    const body = seedBody.parse({ prompt: "a fox", width: "64", height: 64, cfg_scale: 6, negative_prompt: null, sampling_method: null, refine: "false" });
    expect(body.refine).toBe(false);
    expect(Object.fromEntries(Object.entries(requestOf(seedFields, body)).filter(([, v]) => v !== undefined))).toEqual({ prompt: "a fox", width: 64, height: 64, cfgScale: 6 });
    expect(seedBody.safeParse({ prompt: "a fox", cfg_scale: 25 }).error?.issues[0]?.path).toEqual(["cfg_scale"]);
    expect(seedBody.safeParse({ prompt: "a fox", width: 10 }).error?.issues[0]?.path).toEqual(["width"]);
  });

  it("every field it fills is one the generation request knows", () => {
    const known = Object.keys(generationRequestSchema.shape);
    for (const table of [seedFields, openaiEditFields]) {
      for (const f of Object.values(table)) for (const key of f.fills) expect(known).toContain(key);
    }
  });
});

describe("a table's options are no part of the request", () => {
  it("an option is in the body but maps to nothing", () => {
    const table = { stream: option(z.boolean().optional()) };
    expect(Object.keys(shapeOf(table))).toEqual(["stream"]);
    expect(requestOf(table, { stream: true })).toEqual({});
    expect(paramNamesOf(table)).toEqual({});
  });
});
