import { readFile } from "node:fs/promises";
import path from "node:path";
import type { Context } from "hono";
import type { ImageUrlSigner } from "./security/signed-image-urls.js";
import type { ServerContext } from "./server-context.js";

/**
 * Where clients fetch a generated image: `<base>/images/<file>`. The base is
 * PUBLIC_BASE_URL when set, else what the request itself used to reach us (proxy headers
 * first), so a link works for whoever asked, as long as their browser can reach us too.
 */
export function publicBaseUrl(c: Context, configured: string | undefined): string {
  if (configured) return configured;
  const url = new URL(c.req.url);
  const proto = firstValue(c.req.header("x-forwarded-proto")) ?? url.protocol.replace(/:$/, "");
  const host = firstValue(c.req.header("x-forwarded-host")) ?? c.req.header("host") ?? url.host;
  return `${proto}://${host}`;
}

function firstValue(header: string | undefined): string | undefined {
  const value = header?.split(",")[0]?.trim();
  return value === "" ? undefined : value;
}

/** The public URL of an output file (outputs are written straight into OUTPUT_DIR). */
export function imageUrl(base: string, file: string): string {
  return `${base}${imagePath(file)}`;
}

/** `/images/<file>`, the path a signed link's signature covers. */
export function imagePath(file: string): string {
  return `/images/${encodeURIComponent(path.basename(file))}`;
}

/**
 * How an answer links the images it made: where this server is reached, and each image's
 * URL, signed when API_KEY is set (security/signed-image-urls.ts) so that a browser, which
 * cannot send the key, loads it anyway.
 */
export interface ImageLinks {
  /** publicBaseUrl, without a trailing slash (also the base of other links, such as a job's events_url). */
  readonly base: string;
  /** The URL of an output file for the client to fetch. */
  image(file: string): string;
}

/** Links from `base`, signed by `signer` when there is one. */
export function imageLinks(base: string, signer?: ImageUrlSigner): ImageLinks {
  return {
    base,
    image: (file) => (signer ? `${imageUrl(base, file)}?${signer.query(imagePath(file))}` : imageUrl(base, file)),
  };
}

/** The links a route's answer carries: this request's base, signed as the server is set up to sign. */
export function linksFor(c: Context, ctx: Pick<ServerContext, "options" | "imageSigner">): ImageLinks {
  return imageLinks(publicBaseUrl(c, ctx.options.publicBaseUrl), ctx.imageSigner);
}

export async function readBase64(file: string): Promise<string> {
  return (await readFile(file)).toString("base64");
}
