import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { APIError } from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { readSpawns } from "../fakes/fake-gpu.mjs";
import { until } from "../helpers/until.js";
import { postJson, startServerStack, type ServerStack } from "./harness.js";

let s: ServerStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

type Body = Parameters<ServerStack["client"]["images"]["generate"]>[0] & Record<string, unknown>;

async function apiError(promise: Promise<unknown>): Promise<APIError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(APIError);
  return err as APIError;
}

/** Nothing may have started: no sd-cli, no LLM call, no unload. */
function expectNothingRan(stack: ServerStack["stack"]) {
  expect(readSpawns(stack.gpuDir)).toEqual([]);
  expect(stack.ollama.stats.chat).toBe(0);
  expect(stack.ollama.stats.unload).toBe(0);
}


describe("errors in OpenAI's shape, before anything runs", () => {
  it("400 with param and x-should-retry: false for bad values and types", async () => {
    s = await startServerStack();
    const cases: [Body, string][] = [
      [{ prompt: "a fox", size: "100x100" }, "size"],
      [{ prompt: "a fox", size: "big" }, "size"],
      [{ prompt: "a fox", n: 11 }, "n"],
      [{ prompt: "a fox", n: 9 }, "n"],
      [{ prompt: "a fox", n: 0 }, "n"],
      [{ prompt: 42 as unknown as string }, "prompt"],
      [{ prompt: "" }, "prompt"],
      [{ prompt: "a fox", steps: "abc" }, "steps"],
      [{ prompt: "a fox", steps: 500 }, "steps"],
      [{ prompt: "a fox", cfg_scale: -3 }, "cfg_scale"],
      [{ prompt: "a fox", sampling_method: "warp_drive" }, "sampling_method"],
      [{ prompt: "a fox", response_format: "gif" as never }, "response_format"],
      [{ prompt: "a fox", output_format: "webp" }, "output_format"],
      [{ prompt: "a fox", partial_images: 7, stream: true }, "partial_images"],
    ];
    for (const [body, param] of cases) {
      const err = await apiError(s.client.images.generate(body));
      expect({ status: err.status, param: err.param, body }).toMatchObject({ status: 400, param, body });
      expect(err.type).toBe("invalid_request_error");
      expect(err.headers?.get("x-should-retry")).toBe("false");
    }
    const chat = await apiError(s.client.chat.completions.create({ model: "diffugen", messages: [] }));
    expect(chat).toMatchObject({ status: 400, param: "messages" });
    const noUser = await apiError(s.client.chat.completions.create({ model: "diffugen", messages: [{ role: "system", content: "be nice" }] }));
    expect(noUser).toMatchObject({ status: 400, param: "messages" });

    const notJson = await fetch(`${s.url}/v1/images/generations`, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{nope" });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ error: { type: "invalid_request_error", code: "invalid_json" } });
    expectNothingRan(s.stack);
  });

  // A chat for a model that is not DiffuGen's goes to Ollama (tests/gateway/openai-passthrough.test.ts):
  // DiffuGen's own 404 is for a `diffugen:<model>` the registry does not know.
  it("404 for an unknown model (images and chat) and for an unknown route", async () => {
    s = await startServerStack();
    expect(await apiError(s.client.images.generate({ prompt: "a fox", model: "midjourney" }))).toMatchObject({
      status: 404,
      param: "model",
      code: "model_not_found",
    });
    expect(await apiError(s.client.chat.completions.create({ model: "diffugen:midjourney", messages: [{ role: "user", content: "draw a fox" }] }))).toMatchObject({
      status: 404,
      param: "model",
      code: "model_not_found",
    });
    const route = await fetch(`${s.url}/v1/nothing/here`);
    expect(route.status).toBe(404);
    expect(route.headers.get("x-should-retry")).toBe("false");
    expect(await route.json()).toEqual({
      error: { message: "Unknown request URL: GET /v1/nothing/here", type: "invalid_request_error", param: null, code: "unknown_url" },
    });
    expectNothingRan(s.stack);
  });

  it("401 with API_KEY set and a missing or wrong key on every route but /health, /images/* included", async () => {
    s = await startServerStack({ server: { apiKey: "sekrit" } });
    expect((await s.client.models.list()).data.length).toBeGreaterThan(0);
    const wrong = await fetch(`${s.url}/v1/models`, { headers: { Authorization: "Bearer nope" } });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(await wrong.json()).toMatchObject({ error: { type: "invalid_request_error", code: "invalid_api_key" } });
    // Same length, one character off; a longer key with the right prefix; another scheme.
    for (const authorization of ["Bearer sekriT", "Bearer sekrit2", "Basic c2Vrcml0", "sekrit"]) {
      expect((await fetch(`${s.url}/v1/models`, { headers: { Authorization: authorization } })).status).toBe(401);
    }
    const missing = await postJson(`${s.url}/v1/images/generations`, { prompt: "a fox" });
    expect(missing.status).toBe(401);
    expect(missing.headers.get("x-should-retry")).toBe("false");
    expect(await missing.json()).toMatchObject({ error: { code: "missing_api_key" } });
    // The seed API keeps its own error shape (its OpenAI-body stream under /v1 answers OpenAI's).
    for (const route of ["/generate", "/generate/stream", "/generate/flux"]) {
      const seed = await postJson(`${s.url}${route}`, { prompt: "a fox" });
      expect({ route, status: seed.status }).toEqual({ route, status: 401 });
      expect(await seed.json()).toMatchObject({ success: false, error: expect.stringContaining("API key") });
    }
    for (const [method, route] of [
      ["POST", "/v1/images/generations/stream"],
      ["POST", "/v1/chat/completions"],
      ["POST", "/v1/images/edits"],
      ["POST", "/v1/graph/stream"],
      ["POST", "/v1/runs/stream"],
      ["GET", "/v1/events/stream?prompt=a%20fox"],
      ["GET", "/v1/nothing/here"],
    ] as const) {
      const res = await fetch(`${s.url}${route}`, { method, ...(method === "POST" ? { body: "{}", headers: { "Content-Type": "application/json" } } : {}) });
      expect({ route, status: res.status }).toEqual({ route, status: 401 });
      expect(await res.json()).toMatchObject({ error: { code: "missing_api_key" } });
    }
    const viaHeader = await fetch(`${s.url}/v1/models`, { headers: { "X-API-Key": "sekrit" } });
    expect(viaHeader.status).toBe(200);
    expect((await fetch(`${s.url}/health`)).status).toBe(200);
    expectNothingRan(s.stack);

    // Generated images need the key too, unless the link is the signed one an answer carries
    // (tests/server/exposure.test.ts covers the signed links).
    const made = await s.client.images.generate({ prompt: "a fox", size: "64x64", steps: 1, refine: false, response_format: "url" } as Body & { stream?: false });
    const url = made.data![0]!.url!.split("?")[0]!;
    const open = await fetch(url);
    expect(open.status).toBe(401);
    expect(await open.text()).not.toContain("PNG");
    const withKey = await fetch(url, { headers: { Authorization: "Bearer sekrit" } });
    expect(withKey.status).toBe(200);
    expect(withKey.headers.get("content-type")).toBe("image/png");
    expect((await fetch(url, { headers: { "X-API-Key": "sekrit" } })).status).toBe(200);
  });

  it("CORS (CORS_ORIGINS=*): preflights pass without a key, and answers (401s included) carry the CORS headers", async () => {
    s = await startServerStack({ server: { apiKey: "sekrit", corsOrigins: ["*"] } });
    const preflight = await fetch(`${s.url}/v1/chat/completions`, {
      method: "OPTIONS",
      headers: { Origin: "https://ui.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("*");
    expect(preflight.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
    const refused = await fetch(`${s.url}/v1/models`, { headers: { Origin: "https://ui.example" } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("access-control-allow-origin")).toBe("*");
    const allowed = await fetch(`${s.url}/v1/models`, { headers: { Origin: "https://ui.example", Authorization: "Bearer sekrit" } });
    expect(allowed.headers.get("access-control-allow-origin")).toBe("*");
  });

  it("413 when the body is larger than MAX_BODY_MB", async () => {
    s = await startServerStack({ server: { maxBodyBytes: 4096 } });
    const err = await apiError(s.client.images.generate({ prompt: "a fox ".repeat(2000) }));
    expect(err).toMatchObject({ status: 413, code: "request_too_large" });
    expect(err.headers?.get("x-should-retry")).toBe("false");
    // Chunked (no Content-Length) is counted too.
    const chunked = await fetch(`${s.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: new Blob([JSON.stringify({ model: "diffugen", messages: [{ role: "user", content: "x".repeat(10_000) }] })]).stream(),
      duplex: "half",
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expectNothingRan(s.stack);
  });

  it("503 when sd-cli is missing or the model's weights are (x-should-retry: false)", async () => {
    s = await startServerStack({ env: { SD_CPP_BIN: "/nonexistent/sd-cli" } });
    const noBinary = await apiError(s.client.images.generate({ prompt: "a fox", size: "64x64" }));
    expect(noBinary).toMatchObject({ status: 503, code: "sd_not_found" });
    expect(noBinary.headers?.get("x-should-retry")).toBe("false");
    const noWeights = await apiError(s.client.images.generate({ prompt: "a fox", model: "sdxl" }));
    expect(noWeights).toMatchObject({ status: 503, code: "model_files_missing" });
    expect(noWeights.message).toContain("sd_xl_base_1.0.safetensors");
    expectNothingRan(s.stack);
  });

  it("429 with Retry-After when the GPU queue is full; no job started for it", async () => {
    s = await startServerStack({ env: { MAX_QUEUE: "1" }, sdEnv: { FAKE_SD_STEP_MS: "2000" } });
    const { scheduler } = s.stack.deps;
    const slow = { prompt: "a fox", width: 64, height: 64, steps: 20 };
    const first = new AbortController();
    const second = new AbortController();
    const a = fetch(`${s.url}/generate`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(slow), signal: first.signal }).catch(() => undefined);
    await until("the first job to hold the GPU", () => scheduler.state().gpu.kind === "diffusion" && readSpawns(s!.stack.gpuDir).length === 1, 5_000);
    const b = fetch(`${s.url}/generate`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(slow), signal: second.signal }).catch(() => undefined);
    await until("the second job to queue", () => scheduler.state().queue.length === 1, 5_000);

    const err = await apiError(s.client.images.generate({ prompt: "a fox", size: "64x64" }));
    expect(err).toMatchObject({ status: 429, code: "queue_full" });
    expect(Number(err.headers?.get("retry-after"))).toBeGreaterThanOrEqual(1);
    // Waiting helps here: the SDK may retry.
    expect(err.headers?.get("x-should-retry")).toBeNull();
    const seed = await postJson(`${s.url}/generate`, slow);
    expect(seed.status).toBe(429);
    expect(seed.headers.get("retry-after")).not.toBeNull();
    expect(await seed.json()).toMatchObject({ success: false });
    expect(readSpawns(s.stack.gpuDir)).toHaveLength(1);

    first.abort();
    second.abort();
    await Promise.all([a, b]);
    await scheduler.whenSettled();
    expect(scheduler.state().gpu).toEqual({ kind: "idle" });
  });
});

describe("GET /images/<file> serves only files in OUTPUT_DIR", () => {
  it("refuses traversal, symlinks out, previews and unknown names", async () => {
    s = await startServerStack();
    const outside = path.join(s.stack.root, "secret.png");
    fs.writeFileSync(outside, "root:x:0:0");
    fs.symlinkSync(outside, path.join(s.stack.outputDir, "link.png"));
    fs.writeFileSync(path.join(s.stack.outputDir, "x.preview.png"), "preview");
    for (const p of [
      "/images/..%2f..%2fetc%2fpasswd",
      "/images/..%2fsecret.png",
      "/images/%2e%2e%2fsecret.png",
      "/images/..%5csecret.png",
      "/images/link.png",
      "/images/x.preview.png",
      "/images/missing.png",
      "/images/",
    ]) {
      const res = await fetch(`${s.url}${p}`);
      expect({ p, status: res.status }).toEqual({ p, status: 404 });
      expect(await res.text()).not.toContain("root:");
    }
    // A raw request line, which fetch would have normalised.
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(new URL(s!.url).port as unknown as number, "127.0.0.1", () => {
        socket.write("GET /images/../../../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      });
      let data = "";
      socket.on("data", (d) => (data += d.toString()));
      socket.on("end", () => resolve(data));
      socket.on("error", reject);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 (400|404)/);
    expect(raw).not.toContain("root:");
  });
});
