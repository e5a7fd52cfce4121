import { readFile } from "node:fs/promises";
import path from "node:path";
import type { Context } from "hono";

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
  return `${base}/images/${encodeURIComponent(path.basename(file))}`;
}

export async function readBase64(file: string): Promise<string> {
  return (await readFile(file)).toString("base64");
}
