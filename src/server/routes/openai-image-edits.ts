import { Hono } from "hono";
import { z } from "zod";
import type { JobInput } from "../../jobs/index.js";
import { invalidRequest } from "../errors.js";
import { admit } from "../fields/admit.js";
import { shapeOf } from "../fields/field-table.js";
import { imageModelOf, openaiEditFields, openaiEditParams } from "../fields/openai-fields.js";
import { parseWith } from "../http-input.js";
import type { AppEnv, ServerContext } from "../server-context.js";
import { fitToGrid, saveImageUpload, type SavedUpload, type UploadedFile } from "../uploads.js";
import { answerImageJob, imageJobInput } from "./openai-images.js";

/**
 * POST /v1/images/edits: OpenAI's multipart image edit, run as img2img. The upload becomes
 * a temporary file passed as the init image; `strength` (0-1, default 0.75) says how far to
 * move from it. A `mask` is accepted and ignored (sd-cli inpainting is not wired up yet).
 */

const editFields = z.object({
  prompt: z.string({ error: "prompt is required" }),
  ...shapeOf(openaiEditFields),
});

export function openaiImageEditsRoutes(ctx: ServerContext) {
  return new Hono<AppEnv>().post("/images/edits", async (c) => {
    const type = c.req.header("content-type") ?? "";
    if (!/^multipart\/form-data/i.test(type)) {
      throw invalidRequest("Image edits take a multipart/form-data body with an 'image' file", null, "invalid_content_type");
    }
    let form: FormData;
    try {
      form = await c.req.formData();
    } catch {
      throw invalidRequest("The multipart body could not be parsed", null, "invalid_multipart");
    }
    const files = [...form.getAll("image"), ...form.getAll("image[]")].filter((v): v is UploadedFile => typeof v !== "string");
    const body = parseWith(editFields, formFields(form));
    const file = files[0];
    if (!file) throw invalidRequest("'image' is required: attach a PNG or JPEG file", "image");

    const upload = await saveImageUpload(file, { param: "image", maxBytes: ctx.options.maxBodyBytes });
    let input: JobInput;
    try {
      // No size (or `auto`): the upload's own, on the model's grid.
      const size = body.size === undefined || body.size === "auto" ? defaultSizeFor(ctx, body.model, upload) : {};
      input = admit(ctx, imageJobInput(body.prompt, body, { ...size, initImage: upload.path }, openaiEditFields), openaiEditParams);
    } catch (err) {
      await upload.remove();
      throw err;
    }
    // sd-cli reads the file while the job runs: it is deleted once the run is over.
    return answerImageJob(c, ctx, input, body, { prefix: "image_edit", params: openaiEditParams, release: upload.remove });
  });
}

/** The text fields of the form, first value each (files are read separately). */
function formFields(form: FormData): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const [key, value] of form.entries()) {
    if (typeof value === "string" && !(key in fields)) fields[key] = value;
  }
  return fields;
}

/** The upload's own size on the model's grid; the model's default when the model is unknown (admit answers 404). */
function defaultSizeFor(ctx: ServerContext, model: string | undefined, upload: SavedUpload): { width?: number; height?: number } {
  const entry = ctx.deps.registry.find(imageModelOf(model) ?? ctx.deps.config.sd.defaultModel);
  return entry ? fitToGrid(upload.width, upload.height, entry.limits) : {};
}
