import { afterEach, describe, expect, it } from "vitest";
import { rawRequest } from "../reliability/helpers/raw-http.js";
import { pngSize, startServerStack, type ServerStack } from "./harness.js";

/**
 * What a stranger on the network gets from a server with API_KEY set (issue 16): /health's
 * bare status, and image links only as the answers hand them out (signed, until they expire).
 * What the user's own browser gets: those signed links load with no header, as OpenWebUI's
 * browser loads them from a chat or an image answer. And CORS stays off unless named.
 */

const apiKey = "exposure-test-key";
const day = 86_400_000;
let s: ServerStack | undefined;

afterEach(async () => {
  await s?.close();
  s = undefined;
});

type ImageBody = { data: { url: string }[] };

describe("/health with API_KEY set", () => {
  it("without the key: {status} alone, no paths, versions or models; with it: the whole report", async () => {
    s = await startServerStack({ server: { apiKey } });
    for (const headers of [{}, { Authorization: "Bearer wrong" }] as Record<string, string>[]) {
      const bare = await fetch(`${s.url}/health`, { headers });
      expect(bare.status).toBe(200);
      const body = (await bare.json()) as Record<string, unknown>;
      expect(Object.keys(body)).toEqual(["status"]);
      expect(body.status).toBe("ok");
    }
    const full = (await (await fetch(`${s.url}/health`, { headers: { Authorization: `Bearer ${apiKey}` } })).json()) as Record<string, unknown>;
    expect(full).toMatchObject({ status: "ok", ok: true, sd: { found: true }, ollama: { reachable: true } });
    expect(full.models).toEqual(expect.arrayContaining([expect.objectContaining({ name: "sd15" })]));
  });

  it("without API_KEY (loopback): the whole report to anyone, as before", async () => {
    s = await startServerStack();
    const body = (await (await fetch(`${s.url}/health`)).json()) as Record<string, unknown>;
    expect(body).toHaveProperty("sd");
    expect(body).toHaveProperty("models");
  });
});

describe("signed image links", () => {
  it("the OpenAI SDK's url answer loads with a plain fetch, no header, until it expires; then 403", async () => {
    let now = Date.now();
    s = await startServerStack({ server: { apiKey, clock: () => now } });
    const made = await s.client.images.generate({ prompt: "a fox", size: "64x64", response_format: "url", steps: 1, refine: false } as never);
    const url = (made as unknown as ImageBody).data[0]!.url;
    expect(url).toMatch(/\/images\/[^?]+\.png\?exp=\d+&sig=[\w-]{43}$/);

    const loaded = await fetch(url);
    expect(loaded.status).toBe(200);
    expect(loaded.headers.get("content-type")).toBe("image/png");
    expect(loaded.headers.get("cache-control")).toMatch(/^private\b/);
    expect(pngSize(Buffer.from(await loaded.arrayBuffer()))).toEqual({ width: 64, height: 64 });

    // A week is the default: still good after six days, not after eight.
    now += 6 * day;
    expect((await fetch(url)).status).toBe(200);
    now += 2 * day;
    const expired = await fetch(url);
    expect(expired.status).toBe(403);
    expect(await expired.json()).toMatchObject({ error: { code: "image_url_expired", type: "invalid_request_error" } });
    // The key still opens it; and the job gives a fresh link that works again.
    expect((await fetch(url, { headers: { Authorization: `Bearer ${apiKey}` } })).status).toBe(200);
    const jobs = (await (await fetch(`${s.url}/v1/jobs`, { headers: { Authorization: `Bearer ${apiKey}` } })).json()) as { data: { result: { images: { url: string }[] } }[] };
    const fresh = jobs.data[0]!.result.images[0]!.url;
    expect(fresh).not.toBe(url);
    expect((await fetch(fresh)).status).toBe(200);
  });

  it("a link is good for its own image only: a changed signature, expiry or file is 403, no signature 401", async () => {
    s = await startServerStack({ server: { apiKey } });
    const urls: string[] = [];
    for (const prompt of ["a fox", "a hare"]) {
      const made = await s.client.images.generate({ prompt, size: "64x64", response_format: "url", steps: 1, refine: false } as never);
      urls.push((made as unknown as ImageBody).data[0]!.url);
    }
    const [fox, hare] = urls.map((u) => new URL(u)) as [URL, URL];
    const sig = fox.searchParams.get("sig")!;
    const exp = fox.searchParams.get("exp")!;
    const forged = [
      `${fox.pathname}?exp=${exp}&sig=${sig.slice(0, -1)}${sig.endsWith("A") ? "B" : "A"}`,
      `${fox.pathname}?exp=${Number(exp) + 86_400}&sig=${sig}`,
      `${hare.pathname}?exp=${exp}&sig=${sig}`,
      `${fox.pathname}?exp=${exp}&sig=`,
      `${fox.pathname}?sig=${sig}`,
      `${fox.pathname}?exp=abc&sig=${sig}`,
    ];
    for (const path of forged) {
      const res = await rawRequest(s.url, { method: "GET", path });
      expect({ path, status: res.status }).toEqual({ path, status: 403 });
      expect(res.json).toMatchObject({ error: { code: "invalid_image_signature" } });
      expect(res.text).not.toContain("PNG");
    }
    const unsigned = await rawRequest(s.url, { method: "GET", path: fox.pathname });
    expect(unsigned.status).toBe(401);
    // Each link as given works, its name percent-escaped or not.
    const escaped = fox.pathname.replace(/\.png$/, "%2Epng");
    expect((await rawRequest(s.url, { method: "GET", path: `${escaped}${fox.search}` })).status).toBe(200);
    expect((await fetch(hare)).status).toBe(200);
  });

  it("the chat's markdown and the original API's image_url are signed too; without API_KEY nothing is", async () => {
    s = await startServerStack({ server: { apiKey } });
    const chat = await s.client.chat.completions.create({ model: "diffugen", messages: [{ role: "user", content: "draw a fox" }], size: "64x64", steps: 1 } as never);
    const content = (chat as unknown as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
    const link = /^!\[[^\]]*\]\(([^)]+)\)/.exec(content)?.[1];
    expect(link, content).toMatch(/\?exp=\d+&sig=/);
    expect((await fetch(link!)).status).toBe(200);

    const seed = (await (
      await fetch(`${s.url}/generate`, { method: "POST", headers: { "Content-Type": "application/json", "X-API-Key": apiKey }, body: JSON.stringify({ prompt: "a fox", width: 64, height: 64, steps: 1 }) })
    ).json()) as { image_url: string; markdown_response: string };
    expect(seed.markdown_response).toContain(seed.image_url);
    expect((await fetch(seed.image_url)).status).toBe(200);
    await s.close();

    s = await startServerStack();
    const open = await s.client.images.generate({ prompt: "a fox", size: "64x64", response_format: "url", steps: 1, refine: false } as never);
    const url = (open as unknown as ImageBody).data[0]!.url;
    expect(url).not.toContain("?");
    expect((await fetch(url)).status).toBe(200);
  });

  it("IMAGE_URL_TTL_S=0: no signed links; images need the key, and the chat links the picture instead of embedding it", async () => {
    s = await startServerStack({ server: { apiKey, imageUrlTtlMs: 0 } });
    const made = await s.client.images.generate({ prompt: "a fox", size: "64x64", response_format: "url", steps: 1, refine: false } as never);
    const url = (made as unknown as ImageBody).data[0]!.url;
    expect(url).not.toContain("?");
    expect((await fetch(url)).status).toBe(401);
    const chat = await s.client.chat.completions.create({ model: "diffugen", messages: [{ role: "user", content: "draw a fox" }], size: "64x64", steps: 1 } as never);
    const content = (chat as unknown as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
    expect(content).toMatch(/^\[[^\]]*\]\(http[^)?]+\.png\)/);
  });
});

describe("CORS", () => {
  const preflight = (url: string, origin: string) =>
    fetch(`${url}/v1/chat/completions`, {
      method: "OPTIONS",
      headers: { Origin: origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type" },
    });

  it("off by default: no CORS headers on answers or preflights, so another origin's page cannot read them", async () => {
    s = await startServerStack();
    const res = await fetch(`${s.url}/v1/models`, { headers: { Origin: "https://evil.example" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    const pre = await preflight(s.url, "https://evil.example");
    expect(pre.headers.get("access-control-allow-origin")).toBeNull();
    expect(pre.status).not.toBe(204);
    const gateway = await fetch(`${s.url}/ollama/api/tags`, { headers: { Origin: "https://evil.example" } });
    expect(gateway.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("CORS_ORIGINS: the origins it names, and only those", async () => {
    s = await startServerStack({ server: { apiKey, corsOrigins: ["https://ui.example"] } });
    const pre = await preflight(s.url, "https://ui.example");
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-origin")).toBe("https://ui.example");
    const allowed = await fetch(`${s.url}/v1/models`, { headers: { Origin: "https://ui.example", Authorization: `Bearer ${apiKey}` } });
    expect(allowed.headers.get("access-control-allow-origin")).toBe("https://ui.example");
    const other = await fetch(`${s.url}/v1/models`, { headers: { Origin: "https://evil.example", Authorization: `Bearer ${apiKey}` } });
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
  });
});
