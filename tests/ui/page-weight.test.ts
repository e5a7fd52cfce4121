import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/server/index.js";
import { startStack, type Stack } from "../helpers/stack.js";

/**
 * The page is built for a small box on a LAN: everything it loads is served by DiffuGen
 * itself, and its JS and CSS stay under 100 KB gzipped. Measured on what GET / actually
 * links, as the server sends it.
 */

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

const BUDGET_BYTES = 100 * 1024;

describe("the operator page's weight and headers", () => {
  it("loads under 100 KB of JS and CSS gzipped, all of it from DiffuGen", async () => {
    const app = createApp(stack.runner, { apiKey: "k" });
    const page = await app.request("/");
    expect(page.status).toBe(200);
    const html = await page.text();
    const referenced = [...html.matchAll(/<(?:script|link|img)\b[^>]*?(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    // Nothing from elsewhere: no CDN, no font service; the icon is an empty data: URL.
    const linked = referenced.filter((url) => url !== "data:,");
    expect(linked).toHaveLength(2);
    for (const url of linked) expect(url).toMatch(/^\/ui\/page\.(js|css)\?v=[0-9a-f]{16}$/);

    let gzipped = 0;
    for (const url of linked) {
      const res = await app.request(url, { headers: { "Accept-Encoding": "gzip" } });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-encoding")).toBe("gzip");
      expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
      const sent = Buffer.from(await res.arrayBuffer());
      gzipped += sent.length;
      // The same asset, as a client that takes no gzip gets it, gzips to about the same.
      const plain = Buffer.from(await (await app.request(url)).arrayBuffer());
      expect(Math.abs(gzipSync(plain, { level: 9 }).length - sent.length)).toBeLessThan(64);
    }
    process.stdout.write(`operator page: ${gzipped} bytes of JS and CSS gzipped (budget ${BUDGET_BYTES}), HTML ${gzipSync(html).length} bytes gzipped\n`);
    expect(gzipped).toBeLessThan(BUDGET_BYTES);
  });

  it("serves the shell and its assets without the key, with a policy that lets only them run", async () => {
    const app = createApp(stack.runner, { apiKey: "k" });
    for (const path of ["/", "/ui"]) {
      const res = await app.request(path);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^text\/html/);
      const csp = res.headers.get("content-security-policy")!;
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      // The shell says nothing of the box: no model names, no paths.
      const html = await res.text();
      expect(html).not.toContain("sd15");
      expect(html).not.toContain(stack.root);
    }
    const script = await app.request("/ui/page.js");
    const etag = script.headers.get("etag")!;
    expect(script.headers.get("content-type")).toMatch(/^text\/javascript/);
    expect(script.headers.get("cache-control")).toBe("no-cache");
    expect((await app.request("/ui/page.js", { headers: { "If-None-Match": etag } })).status).toBe(304);
    // The API itself is still closed.
    expect((await app.request("/v1/jobs")).status).toBe(401);
    expect((await app.request("/ui/other.js")).status).toBe(404);
  });
});
