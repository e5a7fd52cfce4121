import { Hono, type Context } from "hono";
import type { AppEnv, ServerContext } from "../server-context.js";
import { ApiError } from "../errors.js";
import { OperatorPage } from "./operator-page.js";
import { loadPageAssets, type PageAsset, type PageAssets } from "./page-assets.js";

/**
 * The operator page: GET / and GET /ui (the HTML), /ui/page.js and /ui/page.css (its one
 * script and stylesheet). Open without the key, like /health: they carry nothing of the
 * box; the page asks the API for everything, with the key it keeps in the tab's session
 * storage (a login form when API_KEY is set). The script and styles are the page's only
 * code: a Content-Security-Policy allows nothing else to run, so a prompt or a model name
 * shown on the page can never become script.
 *
 * /ui/page.js is one path segment under /ui: the LangGraph dev server (which mounts this
 * app at "/") keeps /ui/:agent/:file for its own generative UI.
 */
export const operatorPagePaths = ["/", "/ui", "/ui/page.js", "/ui/page.css"];

export function operatorPageRoutes(ctx: ServerContext) {
  let assets: PageAssets | undefined;
  const loaded = (): PageAssets => {
    try {
      return (assets ??= loadPageAssets());
    } catch (err) {
      throw new ApiError(503, `The operator page's files are missing (${err instanceof Error ? err.message : String(err)}): run npm run build`, {
        type: "server_error",
        code: "page_assets_missing",
      });
    }
  };
  // Images may come from PUBLIC_BASE_URL's origin when it is another one (a proxy in front).
  const imageOrigin = ctx.options.publicBaseUrl === undefined ? "" : ` ${new URL(ctx.options.publicBaseUrl).origin}`;
  const policy = [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    `img-src 'self' data:${imageOrigin}`,
    `connect-src 'self'${ctx.options.publicBaseUrl === undefined ? "" : ` ${new URL(ctx.options.publicBaseUrl).origin}`}`,
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");

  const page = (c: Context<AppEnv>) => {
    const { script, style } = loaded();
    c.header("Content-Security-Policy", policy);
    c.header("X-Content-Type-Options", "nosniff");
    c.header("Referrer-Policy", "no-referrer");
    c.header("Cache-Control", "no-cache");
    return c.html(`<!doctype html>${(<OperatorPage scriptUrl={`/ui/page.js?v=${script.hash}`} styleUrl={`/ui/page.css?v=${style.hash}`} />).toString()}`);
  };

  return new Hono<AppEnv>()
    .get("/", page)
    .get("/ui", page)
    .get("/ui/page.js", (c) => serveAsset(c, loaded().script))
    .get("/ui/page.css", (c) => serveAsset(c, loaded().style));
}

/** One asset: 304 when the browser has it, gzipped when it takes gzip, kept a year when asked for by hash. */
function serveAsset(c: Context<AppEnv>, asset: PageAsset): Response {
  const etag = `"${asset.hash}"`;
  const headers: Record<string, string> = {
    "Content-Type": asset.contentType,
    ETag: etag,
    Vary: "Accept-Encoding",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": c.req.query("v") === asset.hash ? "public, max-age=31536000, immutable" : "no-cache",
  };
  if (c.req.header("if-none-match") === etag) return new Response(null, { status: 304, headers });
  const gzip = /\bgzip\b/.test(c.req.header("accept-encoding") ?? "");
  const body = gzip ? asset.gzipped : asset.body;
  return new Response(new Uint8Array(body), { status: 200, headers: { ...headers, ...(gzip ? { "Content-Encoding": "gzip" } : {}), "Content-Length": String(body.length) } });
}
