import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rawRequest, type RawRequest, type RawResponse } from "../reliability/helpers/raw-http.js";
import { LLM_MODEL, startStack, type ServedStack } from "../helpers/stack.js";

/**
 * Hostile and malformed calls to /ollama are refused by the gateway itself, in Ollama's
 * error shape with the status Ollama would give, and never forwarded: the fake Ollama
 * receives nothing, no lease is taken. Blob uploads are the exception to the body limit:
 * they stream through, whatever their size.
 */

const maxBodyBytes = 64 * 1024;
const digest = (bytes: Buffer | string) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

let stack: ServedStack;
beforeAll(async () => {
  stack = await startStack({ server: { maxBodyBytes } });
});
afterAll(async () => {
  await stack?.close();
});

/** Sends `request`, expects it refused with `status` in Ollama's `{"error": "..."}` shape, and nothing forwarded. */
async function refused(request: RawRequest, status: number, message?: RegExp | string): Promise<RawResponse> {
  const before = stack.ollama.requests.length;
  const grantsBefore = stack.deps.scheduler.stats().grants.llm;
  const res = await rawRequest(stack.url, request);
  const where = `${request.method} ${request.path} → ${res.status} ${res.text.slice(0, 300)}`;
  expect(res.status, where).toBe(status);
  expect(res.headers["content-type"], where).toMatch(/^application\/json/);
  if (request.method === "HEAD") {
    expect(res.text, where).toBe("");
  } else if (request.path.startsWith("/ollama/v1/")) {
    expect(res.json, where).toMatchObject({ error: { message: expect.any(String), type: expect.any(String) } });
  } else {
    expect(Object.keys(res.json as object), where).toEqual(["error"]);
    expect(typeof (res.json as { error: unknown }).error, where).toBe("string");
    if (message !== undefined) expect((res.json as { error: string }).error, where).toMatch(message);
  }
  expect(stack.ollama.requests.length, `${where}\nreached Ollama`).toBe(before);
  expect(stack.deps.scheduler.stats().grants.llm, `${where}\ntook a lease`).toBe(grantsBefore);
  return res;
}

const json = (path: string, body: unknown, method = "POST"): RawRequest => ({ method, path, headers: { "Content-Type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });

describe("bodies that are not what Ollama reads", () => {
  it("not JSON, empty, or not an object: 400, in Ollama's words where it has them", async () => {
    await refused(json("/ollama/api/chat", "{not json"), 400, /invalid JSON/);
    await refused(json("/ollama/api/chat", ""), 400, "missing request body");
    await refused(json("/ollama/api/generate", "[1,2]"), 400, /JSON object/);
    await refused(json("/ollama/api/show", "null"), 400, /JSON object/);
    await refused(json("/ollama/api/embed", '"text"'), 400, /JSON object/);
  });

  it("a gated call without a model: 400 'model is required', as Ollama says it", async () => {
    for (const path of ["/ollama/api/chat", "/ollama/api/generate", "/ollama/api/embed", "/ollama/api/embeddings"]) {
      await refused(json(path, { messages: [{ role: "user", content: "hi" }], prompt: "hi", input: "hi" }), 400, "model is required");
      await refused(json(path, { model: "", prompt: "hi" }), 400, "model is required");
      await refused(json(path, { model: null, prompt: "hi" }), 400, "model is required");
    }
    // The unload too: `ollama stop` always names its model.
    await refused(json("/ollama/api/chat", { messages: [], keep_alive: 0 }), 400, "model is required");
    await refused(json("/ollama/v1/chat/completions", { messages: [{ role: "user", content: "hi" }] }), 400);
  });

  it("invalid model names in any field that names a model: 400", async () => {
    const bad = ["../../../etc/passwd", "qwen/../../x", "a\u0000b", "qwen\t2.5:3b", "x".repeat(700), "a/b/c/d", ".hidden", "qwen:tag:more"];
    for (const name of bad) {
      await refused(json("/ollama/api/chat", { model: name, messages: [{ role: "user", content: "hi" }] }), 400, /model/);
      await refused(json("/ollama/api/show", { name }), 400);
      await refused(json("/ollama/api/pull", { model: name }), 400);
      await refused(json("/ollama/api/delete", { model: name }, "DELETE"), 400);
      await refused(json("/ollama/api/copy", { source: LLM_MODEL, destination: name }), 400, /destination/);
      await refused(json("/ollama/api/create", { model: "mine", from: name }), 400, /from/);
      await refused(json("/ollama/v1/embeddings", { model: name, input: "hi" }), 400);
    }
    await refused(json("/ollama/api/chat", { model: 42, messages: [] }), 400, /model: must be a string/);
  });

  it("files in /api/create that walk out of the model or are not blob digests: 400", async () => {
    const ok = digest("weights");
    await refused(json("/ollama/api/create", { model: "mine", files: { "../model.gguf": ok } }), 400, /files/);
    await refused(json("/ollama/api/create", { model: "mine", files: { "/etc/passwd": ok } }), 400, /files/);
    await refused(json("/ollama/api/create", { model: "mine", files: { "model.gguf": "sha256:../../x" } }), 400, /invalid digest format/);
    await refused(json("/ollama/api/create", { model: "mine", adapters: { "a.gguf": "nope" } }), 400, /invalid digest format/);
  });

  it("compressed bodies the gateway cannot look into: 415", async () => {
    const body = gzipSync(JSON.stringify({ model: LLM_MODEL, messages: [{ role: "user", content: "hi" }] }));
    await refused({ method: "POST", path: "/ollama/api/chat", headers: { "Content-Type": "application/json", "Content-Encoding": "gzip" }, body }, 415);
  });
});

describe("sizes", () => {
  it("a JSON body over the limit: 413, whether its length is announced or not", async () => {
    const big = JSON.stringify({ model: LLM_MODEL, messages: [{ role: "user", content: "x".repeat(maxBodyBytes) }] });
    await refused({ ...json("/ollama/api/chat", big) }, 413, /MAX_BODY_MB/);
    await refused({ ...json("/ollama/api/chat", big), chunked: true }, 413, /MAX_BODY_MB/);
    await refused({ ...json("/ollama/api/show", big), chunked: true }, 413);
  });

  it("a blob upload far over the JSON limit streams through: 201, then HEAD finds it", async () => {
    const blob = Buffer.alloc(8 * maxBodyBytes, 7);
    const id = digest(blob);
    const head = await rawRequest(stack.url, { method: "HEAD", path: `/ollama/api/blobs/${id}` });
    expect(head.status).toBe(404);
    const upload = await rawRequest(stack.url, { method: "POST", path: `/ollama/api/blobs/${id}`, body: blob, chunked: true });
    expect(upload.status).toBe(201);
    expect((await rawRequest(stack.url, { method: "HEAD", path: `/ollama/api/blobs/${id}` })).status).toBe(200);
    // Ollama's own check, relayed: the bytes arrived intact, or the digest would not match.
    const mismatch = await rawRequest(stack.url, { method: "POST", path: `/ollama/api/blobs/${digest("other")}`, body: blob });
    expect(mismatch.status).toBe(400);
    expect(mismatch.json).toMatchObject({ error: expect.stringMatching(/^digest mismatch/) });
  });
});

describe("paths", () => {
  it("path traversal in /api/blobs/:digest, plain or percent-encoded, is refused before Ollama", async () => {
    const hex = "a".repeat(64);
    for (const path of [
      "/ollama/api/blobs/..%2F..%2Fetc%2Fpasswd",
      "/ollama/api/blobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
      "/ollama/api/blobs/sha256:..%2f" + hex,
      `/ollama/api/blobs/sha256-${hex.slice(1)}`,
      `/ollama/api/blobs/sha256:${hex}%00`,
      "/ollama/api/blobs/%E0%A4%A",
    ]) {
      await refused({ method: "HEAD", path }, 400);
      await refused({ method: "POST", path, body: "x" }, 400, "invalid digest format");
    }
    // Dot segments are resolved before any route: /ollama/api/blobs/../x is /ollama/api/x (not Ollama's), and
    // further up the path leaves the gateway altogether (DiffuGen's own 404).
    await refused({ method: "POST", path: "/ollama/api/blobs/../x", body: "x" }, 404, /unknown Ollama API route/);
    const before = stack.ollama.requests.length;
    const out = await rawRequest(stack.url, { method: "POST", path: "/ollama/api/blobs/../../../etc/passwd", body: "x" });
    expect(out.status).toBe(404);
    expect(stack.ollama.requests.length).toBe(before);
  });

  it("invalid model names in /v1/models/:model: 400", async () => {
    await refused({ method: "GET", path: "/ollama/v1/models/..%2F..%2Fx" }, 400);
    await refused({ method: "GET", path: "/ollama/v1/models/a%00b" }, 400);
  });

  it("routes Ollama does not have: 404 (405 for a known path), in the route's shape", async () => {
    await refused({ method: "GET", path: "/ollama/api/nope" }, 404, /unknown Ollama API route/);
    await refused({ method: "POST", path: "/ollama/api/tags/extra", body: "{}" }, 404);
    await refused({ method: "GET", path: "/ollama/v1/nope" }, 404);
    const res = await refused({ method: "GET", path: "/ollama/api/chat" }, 405, /not allowed/);
    expect(res.headers.allow).toBe("POST");
    await refused({ method: "PUT", path: "/ollama/api/tags" }, 405);
    // Another spelling of the mount is not the mount: nothing is forwarded.
    const spelled = await rawRequest(stack.url, { method: "GET", path: "/oll%61ma/api/tags" });
    expect(spelled.status).toBe(404);
  });
});

describe("what is well-formed goes through as it is", () => {
  it("names Ollama accepts: namespaces, registries with ports, source suffixes, tags with dots", async () => {
    for (const model of ["library/qwen2.5:3b", "registry.example.com:5000/team/model:v1.2", "hf.co/someone/Model-GGUF:Q4_K_M", "gpt-oss:20b-cloud", "qwen2.5:3b:local", " qwen2.5:3b "]) {
      const res = await rawRequest(stack.url, json("/ollama/api/show", { model }));
      // Ollama (the fake) decides: found or not found, never a refusal by the gateway.
      expect([200, 404], `${model} → ${res.status} ${res.text}`).toContain(res.status);
      expect(stack.ollama.requests.at(-1)?.body).toEqual({ model });
    }
  });

  it("relays Ollama's own errors untouched", async () => {
    const res = await rawRequest(stack.url, json("/ollama/api/chat", { model: "missing:1b", messages: [{ role: "user", content: "hi" }] }));
    expect(res.status).toBe(404);
    expect(res.json).toEqual({ error: "model 'missing:1b' not found" });
    expect(stack.deps.scheduler.state().gpu).toEqual({ kind: "idle" });
  });
});
