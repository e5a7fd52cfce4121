import { realpathSync } from "node:fs";
import { readFile, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { Hono } from "hono";
import { outputTagOf } from "../../diffusion/index.js";
import { ApiError } from "../errors.js";
import type { AppEnv, ServerContext } from "../server-context.js";

/**
 * GET /images/<file>: the generated images, for `url` responses and the markdown links in
 * chat answers. With API_KEY set it needs the key, or a link this server signed and that
 * has not expired (security/image-access.ts checks either before this runs), which is what
 * answers hand out, so a browser loads them without a header. Only a plain file name
 * directly in OUTPUT_DIR is served: no separators, no dot-dot, no symlink out, no preview
 * files, nothing of a job that failed.
 */

const servableName = /^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*\.(png|jpe?g|webp)$/;
const contentTypes: Record<string, string> = { png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", webp: "image/webp" };

export function imagesFilesRoutes(ctx: ServerContext) {
  return new Hono<AppEnv>().get("/:name", async (c) => {
    const name = c.req.param("name");
    // A file of a job that did not succeed (a crash mid-batch, a cancel) is not an answer.
    const tag = outputTagOf(name);
    if (tag !== undefined && !ctx.runner.store.fileTagServable(tag)) throw notFound();
    const file = await servableFile(ctx.deps.config.sd.outputDir, name);
    const ext = path.extname(file).slice(1).toLowerCase();
    return c.body(new Uint8Array(await readFile(file)), 200, {
      "Content-Type": contentTypes[ext] ?? "application/octet-stream",
      // Output names are unique: a file never changes once written. Behind a key, only the
      // browser that was allowed to load it may keep it, not a shared cache.
      "Cache-Control": `${ctx.options.apiKey === undefined ? "public" : "private"}, max-age=31536000, immutable`,
      "X-Content-Type-Options": "nosniff",
    });
  });
}

function notFound(): ApiError {
  return new ApiError(404, "Image not found", { type: "invalid_request_error", code: "image_not_found" });
}

async function servableFile(outputDir: string, name: string): Promise<string> {
  if (!servableName.test(name) || name.includes("..") || name.endsWith(".preview.png")) throw notFound();
  let root: string;
  try {
    root = realpathSync(outputDir);
  } catch {
    throw notFound();
  }
  try {
    const file = await realpath(path.join(root, name));
    if (path.dirname(file) !== root || !(await stat(file)).isFile()) throw notFound();
    return file;
  } catch {
    throw notFound();
  }
}
