import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

/**
 * The page's two files (assets/page.js and assets/page.css), read once: served by DiffuGen
 * itself (no CDN: a LAN box may be offline), gzipped once, named by their hash so a browser
 * keeps them until they change. `npm run build` copies assets/ next to the compiled module.
 */
export interface PageAsset {
  body: Buffer;
  gzipped: Buffer;
  contentType: string;
  /** The first 16 hex digits of the body's SHA-256: the ETag and the `?v=` of its URL. */
  hash: string;
}

export interface PageAssets {
  script: PageAsset;
  style: PageAsset;
}

const assetsDir = new URL("./assets/", import.meta.url);

export function loadPageAssets(): PageAssets {
  return {
    script: asset("page.js", "text/javascript; charset=utf-8"),
    style: asset("page.css", "text/css; charset=utf-8"),
  };
}

function asset(name: string, contentType: string): PageAsset {
  const body = readFileSync(new URL(name, assetsDir));
  return { body, gzipped: gzipSync(body, { level: 9 }), contentType, hash: createHash("sha256").update(body).digest("hex").slice(0, 16) };
}
