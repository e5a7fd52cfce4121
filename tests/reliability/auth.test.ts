import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/server/app.js";
import { readSpawns } from "../fakes/fake-gpu.mjs";
import { dialectFor, errorShapeProblem } from "./helpers/error-shapes.js";
import { emptyFigures, recordFigures } from "./helpers/figures.js";
import { concretePath } from "./helpers/hostile-requests.js";
import { rawRequest } from "./helpers/raw-http.js";
import { startReliabilityStack, whenQuiet, type ReliabilityStack } from "./helpers/reliability-stack.js";

/**
 * With API_KEY set, every route but /health (its bare status) answers 401 to a request without the key or
 * with a wrong one, before looking at the request: no job, no sd-cli, no LLM call. The
 * routes come from the app itself (hono's `app.routes`), so a route added later is covered
 * without touching this test; a route that should be open on purpose goes in `openRoutes`.
 */

const apiKey = "s3cret-key-for-tests";
const openRoutes = new Set(["GET /health"]);
/** The operator page's shell: the same static files for everyone; it asks for the key before it shows anything. */
const pageRoutes = new Set(["GET /", "GET /ui", "GET /ui/page.js", "GET /ui/page.css"]);
const gatewayRoutes: [string, string][] = [
  ["GET", "/ollama/"],
  ["GET", "/ollama/api/tags"],
  ["POST", "/ollama/api/chat"],
  ["POST", "/ollama/api/pull"],
  ["POST", "/ollama/api/create"],
  ["DELETE", "/ollama/api/delete"],
  ["POST", "/ollama/v1/chat/completions"],
];

const figures = emptyFigures();
let s: ReliabilityStack;
let routes: { method: string; path: string }[];

beforeAll(async () => {
  s = await startReliabilityStack({ env: { LOG_LEVEL: "silent" }, server: { apiKey } });
  const app = createApp(s.runner, { apiKey, log: () => undefined });
  const seen = new Map<string, { method: string; path: string }>();
  for (const route of app.routes) {
    // `app.use` middleware shows up as ALL on a wildcard pattern: not a route of its own.
    if (route.method === "ALL" && route.path.includes("*")) continue;
    const method = route.method === "ALL" ? "GET" : route.method;
    seen.set(`${method} ${route.path}`, { method, path: route.path });
  }
  routes = [...seen.values()];
});
afterAll(async () => {
  recordFigures("auth", figures);
  await s.close();
});

const refusals: [string, Record<string, string>][] = [
  ["no key", {}],
  ["a wrong bearer key", { Authorization: "Bearer not-the-key" }],
  ["the key with a suffix", { Authorization: `Bearer ${apiKey}x` }],
  ["the key in other case", { Authorization: `Bearer ${apiKey.toUpperCase()}` }],
  ["an empty bearer", { Authorization: "Bearer " }],
  ["basic auth with the key", { Authorization: `Basic ${Buffer.from(`user:${apiKey}`).toString("base64")}` }],
  ["a wrong X-API-Key", { "X-API-Key": "nope" }],
];

describe("API_KEY: every route but /health needs the key", () => {
  it("the app declares the routes we know of (and whatever was added since)", () => {
    const names = routes.map((r) => `${r.method} ${r.path}`);
    for (const known of ["GET /v1/models", "POST /v1/images/generations", "POST /v1/images/edits", "POST /v1/chat/completions", "POST /generate", "GET /images/:name", "GET /health"]) {
      expect(names).toContain(known);
    }
  });

  for (const [label, headers] of refusals) {
    it(`${label}: 401 in the dialect's shape, with WWW-Authenticate, and nothing runs`, async () => {
      for (const route of routes) {
        const key = `${route.method} ${route.path}`;
        const path = concretePath(route.path);
        const body = route.method === "GET" || route.method === "HEAD" ? undefined : JSON.stringify({ prompt: "a fox", model: "diffugen", messages: [{ role: "user", content: "draw a fox" }] });
        const res = await rawRequest(s.url, { method: route.method, path, headers: { "Content-Type": "application/json", ...headers }, body });
        figures.requests += 1;
        const where = `${key} with ${label} → ${res.status} ${res.text.slice(0, 200)}`;
        if (res.status >= 500) figures.badInput5xx += 1;
        if (pageRoutes.has(key)) {
          expect(res.status, where).toBe(200);
          expect(res.text, where).not.toContain(s.stack.root);
          continue;
        }
        if (openRoutes.has(key)) {
          expect(res.status, where).toBe(200);
          // Open, but only its status: nothing about the box without the key.
          expect(Object.keys(res.json as object), where).toEqual(["status"]);
          continue;
        }
        expect(res.status, where).toBe(401);
        expect(errorShapeProblem(res.json, dialectFor(path)), where).toBeUndefined();
        if (res.headers["www-authenticate"] !== undefined) expect(res.headers["www-authenticate"], where).toMatch(/^Bearer\b/);
      }
      // The Ollama gateway (one catch-all route in the app's table), in Ollama's shapes.
      for (const [method, path] of gatewayRoutes) {
        const body = method === "POST" || method === "DELETE" ? JSON.stringify({ model: "qwen2.5:3b", name: "qwen2.5:3b", messages: [{ role: "user", content: "hi" }] }) : undefined;
        const res = await rawRequest(s.url, { method, path, headers: { "Content-Type": "application/json", ...headers }, body });
        figures.requests += 1;
        const where = `${method} ${path} with ${label} → ${res.status} ${res.text.slice(0, 200)}`;
        expect(res.status, where).toBe(401);
        if (path.startsWith("/ollama/v1/")) expect(res.json, where).toMatchObject({ error: { message: expect.stringMatching(/API key/) } });
        else expect(res.json, where).toEqual({ error: expect.stringMatching(/API key/) });
      }
      const spawns = readSpawns(s.stack.gpuDir).length;
      figures.invalidSpawns += spawns;
      expect(spawns).toBe(0);
      expect(s.stack.ollama.stats.chat + s.stack.ollama.stats.unload).toBe(0);
    });
  }

  it("the right key opens them (Bearer or X-API-Key): no 401 anywhere", async () => {
    const good: Record<string, string>[] = [{ Authorization: `Bearer ${apiKey}` }, { authorization: `bearer ${apiKey}` }, { "X-API-Key": apiKey }];
    for (const headers of good) {
      // Streams that do not end on their own (a graph stream, the /v1/events feed) are not waited for.
      for (const route of routes.filter((r) => r.method === "GET" && !r.path.includes("stream") && r.path !== "/v1/events")) {
        const res = await rawRequest(s.url, { method: "GET", path: concretePath(route.path), headers });
        figures.requests += 1;
        expect(res.status, `${route.method} ${route.path} → ${res.status} ${res.text.slice(0, 200)}`).not.toBe(401);
        expect(res.status).toBeLessThan(500);
      }
      // And a request that does something.
      const res = await rawRequest(s.url, { method: "GET", path: "/v1/models", headers });
      expect(res.status).toBe(200);
    }
    const quiet = await whenQuiet(s);
    expect(quiet.violations).toEqual([]);
  });
});
