import { Ollama } from "ollama";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LLM_MODEL, startStack, type ServedStack } from "../helpers/stack.js";
import { postJson } from "./ollama-helpers.js";

/**
 * API_KEY guards /ollama/* (and the second listener) as it guards DiffuGen's other routes:
 * `Authorization: Bearer <key>` (what OpenWebUI sends for an Ollama connection's key) or
 * `X-API-Key`. A refusal is a 401 in Ollama's shape, before anything is read or forwarded.
 */

const apiKey = "gateway-secret";
let stack: ServedStack;
let gatewayUrl: string;

beforeAll(async () => {
  stack = await startStack({ server: { apiKey, ollamaGatewayPort: 0 } });
  gatewayUrl = stack.server.ollamaGatewayUrl!;
});
afterAll(async () => {
  await stack?.close();
});

describe("API_KEY on the Ollama gateway", () => {
  const refusals: [string, Record<string, string>][] = [
    ["no key", {}],
    ["a wrong bearer key", { Authorization: "Bearer nope" }],
    ["the key with a suffix", { Authorization: `Bearer ${apiKey}x` }],
    ["a wrong X-API-Key", { "X-API-Key": "nope" }],
  ];
  for (const [label, headers] of refusals) {
    it(`${label}: 401 in Ollama's shape, with WWW-Authenticate, on every kind of call and both listeners`, async () => {
      const before = stack.ollama.requests.length;
      for (const base of [`${stack.url}/ollama`, gatewayUrl]) {
        const calls = [
          fetch(`${base}/api/tags`, { headers }),
          fetch(`${base}/`, { headers }),
          postJson(`${base}/api/chat`, { model: LLM_MODEL, messages: [{ role: "user", content: "hi" }] }, { headers: { "Content-Type": "application/json", ...headers } }),
          postJson(`${base}/api/generate`, { model: LLM_MODEL, keep_alive: 0 }, { headers: { "Content-Type": "application/json", ...headers } }),
          fetch(`${base}/api/blobs/sha256:${"0".repeat(64)}`, { method: "POST", headers, body: "x" }),
          fetch(`${base}/api/nope`, { headers }),
        ];
        for (const res of await Promise.all(calls)) {
          expect(res.status, res.url).toBe(401);
          expect(res.headers.get("www-authenticate")).toMatch(/^Bearer\b/);
          const body = (await res.json()) as Record<string, unknown>;
          expect(Object.keys(body)).toEqual(["error"]);
          expect(body.error).toMatch(/API key/);
        }
      }
      expect(stack.ollama.requests.length).toBe(before);
      expect(stack.deps.scheduler.stats().grants.llm).toBe(0);
    });
  }

  it("the key opens it: the ollama client with a bearer header, and X-API-Key", async () => {
    for (const host of [`${stack.url}/ollama`, gatewayUrl]) {
      const client = new Ollama({ host, headers: { Authorization: `Bearer ${apiKey}` } });
      expect((await client.list()).models.map((m) => m.name)).toContain(LLM_MODEL);
      const answer = await client.chat({ model: LLM_MODEL, messages: [{ role: "user", content: "hi" }] });
      expect(answer.message.content).toBe("You said: hi");
    }
    const res = await fetch(`${stack.url}/ollama/api/version`, { headers: { "X-API-Key": apiKey } });
    expect(res.status).toBe(200);
  });
});
