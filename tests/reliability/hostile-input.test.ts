import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createApp } from "../../src/server/app.js";
import { readSpawns } from "../fakes/fake-gpu.mjs";
import { makePng, parseSse } from "../server/harness.js";
import { dialectFor, errorShapeProblem } from "./helpers/error-shapes.js";
import { emptyFigures, recordFigures } from "./helpers/figures.js";
import {
  brokenBodyRequests,
  concretePath,
  editRequests,
  eventQueryRequests,
  imageFileRequests,
  jsonFieldRequests,
  nastyText,
  pathRequests,
  routeKind,
  type HostileRequest,
  type RouteTarget,
} from "./helpers/hostile-requests.js";
import { rawRequest, type RawResponse } from "./helpers/raw-http.js";
import { soakFactor, startReliabilityStack, whenQuiet, type ReliabilityStack } from "./helpers/reliability-stack.js";

/**
 * Hostile input, generated (fast-check) rather than listed: every route the app declares
 * gets malformed and hostile requests (wrong types, huge values and bodies, broken JSON and
 * multipart, bad images, unknown models, path traversal, shell metacharacters, NUL bytes,
 * invalid UTF-8). Each must be refused with a 4xx in its dialect's error shape, and none
 * may start sd-cli or touch the LLM. Then hostile but valid prompts: they run, and reach
 * sd-cli as one argv word, unchanged, with nothing executed on the way.
 */

const figures = emptyFigures();
// A soak run (DIFFUGEN_SOAK) does more of everything: give each test as much more time.
vi.setConfig({ testTimeout: 30_000 * soakFactor });
afterAll(() => recordFigures("hostile-input", figures));

/** A lone surrogate cannot travel as UTF-8: sd-cli would get U+FFFD instead. */
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Small, so "over the limit" bodies stay cheap to send. */
const maxBodyBytes = 64 * 1024;
const runs = (n: number) => n * soakFactor;

/** The routes the app declares (middleware entries are `ALL` patterns, left out). */
function declaredRoutes(stack: ReliabilityStack): RouteTarget[] {
  const app = createApp(stack.runner, { log: () => undefined });
  const seen = new Map<string, RouteTarget>();
  for (const route of app.routes) {
    if (route.method === "ALL") continue;
    const key = `${route.method} ${route.path}`;
    if (!seen.has(key)) seen.set(key, { method: route.method, path: route.path, kind: routeKind(route.method, route.path) });
  }
  return [...seen.values()];
}

describe("malformed and hostile requests are refused before anything runs", () => {
  let s: ReliabilityStack;
  let targets: RouteTarget[];
  const hit = new Set<string>();
  const failures: string[] = [];

  beforeAll(async () => {
    s = await startReliabilityStack({ env: { LOG_LEVEL: "silent" }, server: { maxBodyBytes } });
    targets = declaredRoutes(s);
  });
  afterAll(async () => {
    await s.close();
  });

  /** Sends one request and checks what every refusal must be; throws (for fast-check) otherwise. */
  async function check(req: HostileRequest, route?: string): Promise<RawResponse> {
    const spawnsBefore = readSpawns(s.stack.gpuDir).length;
    const llmCallsBefore = llmCalls();
    const res = await rawRequest(s.url, { method: req.method, path: req.path, headers: req.headers, body: req.body, chunked: req.chunked });
    figures.requests += 1;
    if (route) hit.add(route);
    const where = `${req.label} → ${res.status} ${res.text.slice(0, 300)}`;
    if (res.status >= 500) {
      figures.badInput5xx += 1;
      failures.push(where);
    }
    expect(res.status, where).toBeLessThan(500);
    if (req.expect === "refused") expect(res.status, where).toBeGreaterThanOrEqual(400);
    if (res.status >= 400) {
      const dialect = dialectFor(new URL(req.path, "http://x").pathname);
      expect(errorShapeProblem(res.json, dialect), where).toBeUndefined();
      expect(res.headers["content-type"], where).toMatch(/application\/json/);
    }
    // Refused means refused: no sd-cli, no LLM call, no unload.
    const spawned = readSpawns(s.stack.gpuDir).length - spawnsBefore;
    figures.invalidSpawns += spawned;
    expect(spawned, `${where}\nstarted sd-cli`).toBe(0);
    expect(llmCalls() - llmCallsBefore, `${where}\ncalled the LLM`).toBe(0);
    return res;
  }

  const llmCalls = () => s.stack.ollama.stats.chat + s.stack.ollama.stats.unload + s.stack.ollama.stats.load;

  const ofKind = (...kinds: RouteTarget["kind"][]) => targets.filter((t) => kinds.includes(t.kind));

  it("knows every route: each declared route is one the generators cover, or is probed generically", () => {
    const json = ofKind("openai-images", "openai-seed-stream", "seed", "chat", "graph");
    expect(json.length).toBeGreaterThanOrEqual(10);
    expect(ofKind("edits")).toHaveLength(1);
    expect(ofKind("events")).toHaveLength(1);
    expect(ofKind("images-file")).toHaveLength(1);
  });

  it("bad fields on the JSON routes (types, ranges, models, NUL, huge prompts, invalid UTF-8)", async () => {
    const json = ofKind("openai-images", "openai-seed-stream", "seed", "chat", "graph");
    await fc.assert(
      fc.asyncProperty(jsonFieldRequests(json), async (req) => {
        await check(req, `POST ${req.path}`);
      }),
      { numRuns: runs(240) },
    );
  });

  it("broken bodies: truncated or non-JSON, not an object, deeply nested, over the size limit", async () => {
    const json = ofKind("openai-images", "openai-seed-stream", "seed", "chat", "graph");
    await fc.assert(
      fc.asyncProperty(brokenBodyRequests(json, maxBodyBytes), async (req) => {
        await check(req, `POST ${req.path}`);
      }),
      { numRuns: runs(70) },
    );
  });

  it("image edits: bad multipart, base64 or broken images, missing parts, bad fields, huge uploads", async () => {
    const [edits] = ofKind("edits");
    await fc.assert(
      fc.asyncProperty(editRequests(edits!.path, maxBodyBytes), async (req) => {
        await check(req, `POST ${edits!.path}`);
      }),
      { numRuns: runs(70) },
    );
  });

  it("the EventSource route: bad, unknown and hostile query parameters", async () => {
    const [events] = ofKind("events");
    await fc.assert(
      fc.asyncProperty(eventQueryRequests(events!.path), async (req) => {
        await check(req, `GET ${events!.path}`);
      }),
      { numRuns: runs(40) },
    );
  });

  it("image files: path traversal, NUL, previews, hidden files, odd encodings", async () => {
    await fc.assert(
      fc.asyncProperty(imageFileRequests(), async (req) => {
        await check(req, "GET /images/:name");
      }),
      { numRuns: runs(50) },
    );
  });

  it("unknown paths, wrong methods, hostile query strings on every GET", async () => {
    await fc.assert(
      fc.asyncProperty(pathRequests(targets), async (req) => {
        await check(req);
      }),
      { numRuns: runs(50) },
    );
  });

  it("every declared route, including ones added later, answers junk without a 5xx", async () => {
    for (const t of targets) {
      const p = concretePath(t.path);
      if (t.kind === "feed") {
        // A live stream answers for as long as its client stays: only its refusals are waited for.
        await check({ label: `GET ${t.path} with a hostile after`, method: "GET", path: `${p}?after=%00..%2f..&prompt=%00`, headers: {}, expect: "refused" }, `${t.method} ${t.path}`);
        await check({ label: `GET ${t.path} with a hostile Last-Event-ID`, method: "GET", path: p, headers: { "Last-Event-ID": `../../etc/passwd:${"9".repeat(300)}` }, expect: "refused" }, `${t.method} ${t.path}`);
        continue;
      }
      const junk = Buffer.concat([Buffer.from('{"prompt": "$(touch /tmp/x)", '), Buffer.from([0xff, 0x00, 0xfe])]);
      // A route we know takes a body must refuse a broken one; a route added later may not read it.
      const refuses = t.method !== "GET" && t.kind !== "other";
      await check({ label: `${t.method} ${t.path} with a broken body`, method: t.method, path: p, headers: { "Content-Type": "application/json" }, body: t.method === "GET" ? undefined : junk, expect: refuses ? "refused" : "answered" }, `${t.method} ${t.path}`);
      await check({ label: `${t.method} ${t.path} with a hostile query`, method: t.method, path: `${p}?prompt=%00&width=%ff&__proto__[x]=1&constructor=1`, headers: { "Content-Type": "multipart/form-data; boundary=x" }, body: t.method === "GET" ? undefined : Buffer.from("--x\r\nbroken"), expect: "answered" }, `${t.method} ${t.path}`);
    }
    const missed = targets.map((t) => `${t.method} ${t.path}`).filter((r) => !hit.has(r));
    expect(missed).toEqual([]);
  });

  it("in all: at least 500 requests, no 5xx, no sd-cli, no LLM call, nothing left running", async () => {
    expect(figures.requests).toBeGreaterThanOrEqual(500);
    expect(failures).toEqual([]);
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);
    expect(s.stack.ollama.stats.unload).toBe(0);
    const quiet = await whenQuiet(s);
    expect(quiet.violations).toEqual([]);
    expect(quiet.orphans).toEqual([]);
  });
});

describe("no request may name a file on the host as the init image", () => {
  it("GET /v1/events/stream?initImage=<path> is refused like the POST graph stream's request.initImage", async () => {
    // Only uploads (/v1/images/edits) may set an init image: otherwise anyone with the key
    // could have sd-cli read any image file on the host (the POST route refuses it already).
    const s = await startReliabilityStack({ env: { LOG_LEVEL: "silent" } });
    const answers: string[] = [];
    try {
      const png = path.join(s.stack.root, "private.png");
      fs.writeFileSync(png, makePng(64, 64));
      for (const file of [png, "/etc/passwd"]) {
        const query = new URLSearchParams({ prompt: "a fox", width: "64", height: "64", steps: "1", refinePrompt: "false", initImage: file });
        const res = await rawRequest(s.url, { method: "GET", path: `/v1/events/stream?${query}` });
        figures.requests += 1;
        answers.push(`initImage=${file} → ${res.status} ${res.text.slice(0, 200)}`);
        if (res.status >= 400) expect(errorShapeProblem(res.json, "openai"), answers.at(-1)).toBeUndefined();
      }
      await whenQuiet(s);
      const spawned = readSpawns(s.stack.gpuDir);
      figures.invalidSpawns += spawned.length;
      expect(spawned.map((sp) => sp.argv.join(" ")), answers.join("\n")).toEqual([]);
      for (const answer of answers) expect(answer).toMatch(/→ 400 /);
    } finally {
      await s.close();
    }
  });
});

describe("found by this suite: field names that are Object.prototype members", () => {
  let s: ReliabilityStack;
  beforeAll(async () => {
    s = await startReliabilityStack({ env: { LOG_LEVEL: "silent" } });
  });
  afterAll(async () => {
    await s.close();
  });

  async function refusal(method: string, path: string, body?: unknown) {
    const res = await rawRequest(s.url, { method, path, headers: { "Content-Type": "application/json" }, body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body) });
    figures.requests += 1;
    const where = `${method} ${path} ${typeof body === "string" ? body : JSON.stringify(body ?? "")} → ${res.status} ${res.text}`;
    if (res.status >= 500) figures.badInput5xx += 1;
    expect(res.status, where).toBe(400);
    expect(errorShapeProblem(res.json, "openai"), where).toBeUndefined();
    return (res.json as { error: { message: string; param: string | null } }).error;
  }

  it("an unknown request field named constructor, toString... is a 400 naming it, not a 500", async () => {
    // Was: 500 "Internal server error" (the renamed param was Object.prototype's function).
    for (const key of ["constructor", "toString", "hasOwnProperty", "valueOf"]) {
      const error = await refusal("POST", "/v1/graph/stream", { request: { prompt: "a fox", [key]: 1 }, refinePrompt: false });
      expect(error.param).toBe(`request.${key}`);
      expect(error.message).toContain(`unknown parameter '${key}'`);
    }
  });

  it("an unknown top-level field or query parameter named so keeps a string param and a readable message", async () => {
    // Was: "Invalid 'function Object() { [native code] }'" with param dropped or `{}`.
    for (const key of ["constructor", "toString", "__proto__"]) {
      const body = `{"request":{"prompt":"a fox"},"refinePrompt":false,${JSON.stringify(key)}:1}`;
      const error = await refusal("POST", "/v1/graph/stream", body);
      expect(error.param).toBe(key);
      expect(error.message).toBe(`Invalid '${key}': unknown parameter '${key}'`);
      const fromQuery = await refusal("GET", `/v1/events/stream?prompt=a+fox&${key}=1`);
      expect(fromQuery.param).toBe(key);
    }
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);
  });

  it("a field of the wrong type is reported as such, not as missing", async () => {
    // Was: "Invalid 'messages': is required" for messages sent as a string (zod 4 leaves
    // the input out of its issues, so every wrong type looked like a missing field).
    const wrongType = await refusal("POST", "/v1/chat/completions", { model: "diffugen", messages: "draw a fox" });
    expect(wrongType.param).toBe("messages");
    expect(wrongType.message).not.toMatch(/is required/);
    expect(wrongType.message).toMatch(/expected array/);
    const options = await refusal("POST", "/v1/chat/completions", { model: "diffugen", messages: [{ role: "user", content: "hi" }], stream_options: 5 });
    expect(options.message).not.toMatch(/is required/);
    const missing = await refusal("POST", "/v1/chat/completions", { model: "diffugen" });
    expect(missing.message).toBe("Invalid 'messages': is required");
  });
});

describe("hostile but valid prompts run, untouched and unexecuted", () => {
  let s: ReliabilityStack;
  let marker: string;
  beforeAll(async () => {
    s = await startReliabilityStack({ env: { LOG_LEVEL: "silent" } });
    marker = path.join(s.stack.root, "pwned");
  });
  afterAll(async () => {
    await s.close();
  });

  /** Prompts any of which a shell would run something for. */
  const hostilePrompt = () =>
    fc
      .tuple(
        fc.constantFrom(`$(touch ${marker})`, `\`touch ${marker}\``, `; touch ${marker} #`, `| touch ${marker}`, `&& touch ${marker}`, `'"; touch ${marker}; echo "'`, `\n touch ${marker}\n`, `$(IFS=_;touch\${IFS}${marker})`),
        nastyText,
        fc.constantFrom("a red fox", "-o /tmp/evil.png", "--help", "-p", "  padded  ", "%s%n", "(fox:1.2) [snow]"),
      )
      .map(([shell, noise, words]) => `${words} ${shell} ${noise}`)
      .filter((p) => !p.includes("\u0000") && !loneSurrogate.test(p) && !/<lora:/i.test(p) && p.trim() !== "" && p.length <= 8000);

  type Route = "images" | "seed" | "seed-stream" | "graph" | "events" | "edits";
  const routes: Route[] = ["images", "seed", "seed-stream", "graph", "events", "edits"];

  async function send(route: Route, prompt: string, negative: string): Promise<{ status: number; text: string }> {
    figures.requests += 1;
    const json = { "Content-Type": "application/json" };
    const opts = (body: unknown) => ({ method: "POST", headers: json, body: JSON.stringify(body) });
    let res: Response;
    switch (route) {
      case "images":
        res = await fetch(`${s.url}/v1/images/generations`, opts({ prompt, negative_prompt: negative, size: "64x64", steps: 1, refine: false }));
        break;
      case "seed":
      case "seed-stream":
        res = await fetch(`${s.url}/generate${route === "seed-stream" ? "/stream" : ""}`, opts({ prompt, negative_prompt: negative, width: 64, height: 64, steps: 1, refine: false }));
        break;
      case "graph":
        res = await fetch(`${s.url}/v1/graph/stream`, opts({ request: { prompt, negativePrompt: negative, width: 64, height: 64, steps: 1 }, refinePrompt: false }));
        break;
      case "events": {
        const q = new URLSearchParams({ prompt, negativePrompt: negative, width: "64", height: "64", steps: "1", refinePrompt: "false" });
        res = await fetch(`${s.url}/v1/events/stream?${q}`);
        break;
      }
      case "edits": {
        const form = new FormData();
        form.set("image", new Blob([new Uint8Array(makePng(64, 64))], { type: "image/png" }), "in.png");
        for (const [k, v] of Object.entries({ prompt, negative_prompt: negative, size: "64x64", steps: "1", refine: "false" })) form.set(k, v);
        res = await fetch(`${s.url}/v1/images/edits`, { method: "POST", body: form });
        break;
      }
    }
    return { status: res.status, text: await res.text() };
  }

  /** The value after `flag` in the last sd-cli's argv, checking the flag appears once. */
  function lastArgv(): string[] {
    const spawns = readSpawns(s.stack.gpuDir);
    return spawns.at(-1)?.argv ?? [];
  }
  function valueOf(argv: string[], flag: string): string | undefined {
    expect(argv.filter((a) => a === flag)).toHaveLength(1);
    return argv[argv.indexOf(flag) + 1];
  }

  it("shell metacharacters, $(...), quotes, newlines, leading dashes: one argv word each, unchanged", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...routes), hostilePrompt(), hostilePrompt(), async (route, prompt, negative) => {
        const before = readSpawns(s.stack.gpuDir).length;
        const res = await send(route, prompt, negative);
        const where = `${route} ${JSON.stringify(prompt)} → ${res.status} ${res.text.slice(0, 300)}`;
        expect(res.status, where).toBe(200);
        if (route !== "images" && route !== "seed" && route !== "edits") expect(parseSse(res.text).messages.some((m) => m.event === "error"), where).toBe(false);
        expect(readSpawns(s.stack.gpuDir).length, where).toBe(before + 1);
        const argv = lastArgv();
        // multipart/form-data turns every line break into CRLF on the client (HTML spec).
        const sent = (text: string) => (route === "edits" ? text.replace(/\r(?!\n)|(?<!\r)\n/g, "\r\n") : text);
        expect(valueOf(argv, "-p"), where).toBe(sent(prompt));
        expect(valueOf(argv, "-n"), where).toBe(sent(negative));
        expect(fs.existsSync(marker), where).toBe(false);
      }),
      { numRuns: runs(12) },
    );
  });

  it("invalid UTF-8 in a prompt reaches sd-cli as U+FFFD, the rest unchanged", async () => {
    figures.requests += 1;
    const body = Buffer.concat([Buffer.from(`{"prompt":"fox $(touch ${marker}) `), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('","refine":false,"size":"64x64","steps":1}')]);
    const res = await rawRequest(s.url, { method: "POST", path: "/v1/images/generations", headers: { "Content-Type": "application/json" }, body });
    expect(res.status).toBe(200);
    expect(valueOf(lastArgv(), "-p")).toBe(`fox $(touch ${marker}) \ufffd\ufffd\ufffd`);
  });

  it("through the chat model too (the LLM rewrites it): still one word, nothing executed", async () => {
    figures.requests += 1;
    const res = await fetch(`${s.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: "diffugen", size: "64x64", steps: 1, messages: [{ role: "user", content: `draw a fox $(touch ${marker}) \`touch ${marker}\`` }] }),
    });
    expect(res.status).toBe(200);
    expect(valueOf(lastArgv(), "-p")).toContain(`$(touch ${marker})`);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it("afterwards: nothing ran but sd-cli, nothing left running, no broken invariant", async () => {
    expect(fs.existsSync(marker)).toBe(false);
    const quiet = await whenQuiet(s);
    figures.violations += quiet.violations.length;
    figures.orphans += quiet.orphans.length;
    expect(quiet.violations).toEqual([]);
    expect(quiet.orphans).toEqual([]);
    expect(quiet.llmState).toBe("resident");
  });
});
