import { Ollama } from "ollama";
import { afterEach, describe, expect, it } from "vitest";
import { readViolations } from "../fakes/fake-gpu.mjs";
import { startFakeBox, type FakeBox } from "../cli/helpers/fake-box.js";
import { startServe, type ServeProcess } from "../cli/helpers/serve-process.js";
import { LLM_MODEL, startStack, type ServedStack } from "../helpers/stack.js";
import { chatsWith, drawImage, postJson, readNdjson, sdCliRunning } from "./ollama-helpers.js";

/**
 * OLLAMA_GATEWAY_PORT: the gateway at the root of a second listener, for clients that only
 * take a host and port (`OLLAMA_HOST=127.0.0.1:11435 ollama run ...`): the same routes,
 * gate, key and limits as /ollama, started and stopped with the main server.
 */

let stack: ServedStack | undefined;
let box: FakeBox | undefined;
let serve: ServeProcess | undefined;
afterEach(async () => {
  await serve?.kill();
  await box?.close();
  await stack?.close();
  serve = undefined;
  box = undefined;
  stack = undefined;
});

describe("the second listener", () => {
  it("serves Ollama's API at its root: /, /api/tags, and a gated chat", async () => {
    const s = (stack = await startStack({ server: { ollamaGatewayPort: 0 } }));
    const port = s.server.ollamaGatewayPort!;
    expect(port).toBeGreaterThan(0);
    expect(port).not.toBe(s.server.port);
    const root = s.server.ollamaGatewayUrl!;
    expect(root).toBe(`http://127.0.0.1:${port}`);

    expect(await (await fetch(`${root}/`)).text()).toBe("Ollama is running");
    const tags = await fetch(`${root}/api/tags`);
    expect(tags.status).toBe(200);
    expect(await tags.json()).toEqual(await (await fetch(`${s.ollama.url}/api/tags`)).json());

    // As the ollama CLI is pointed at it: OLLAMA_HOST=127.0.0.1:<port>.
    const client = new Ollama({ host: `127.0.0.1:${port}` });
    const grantsBefore = s.deps.scheduler.stats().grants.llm;
    const parts: string[] = [];
    for await (const part of await client.chat({ model: LLM_MODEL, messages: [{ role: "user", content: "hello from the cli" }], stream: true })) parts.push(part.message.content);
    expect(parts.join("")).toBe("You said: hello from the cli");
    expect(s.deps.scheduler.stats().grants.llm).toBe(grantsBefore + 1);
    // Only Ollama's routes: the main listener's API is not here.
    expect((await fetch(`${root}/v1/images/generations`, { method: "POST", body: "{}" })).status).toBe(404);
  });

  it("gates its calls like /ollama: a chat sent during diffusion waits for sd-cli to finish", async () => {
    const s = (stack = await startStack({ server: { ollamaGatewayPort: 0 }, sdEnv: { FAKE_SD_STEP_MS: "80" } }));
    const image = drawImage(s.url, 4);
    await sdCliRunning(s);
    const read = await readNdjson(await postJson(`${s.server.ollamaGatewayUrl}/api/chat`, { model: LLM_MODEL, messages: [{ role: "user", content: "wait your turn" }] }));
    expect(read.lines.at(-1)).toMatchObject({ done: true });
    expect(await image).toBe(200);
    const released = s.gpuLog.find((l) => l.message === "GPU released" && l.fields.phase === "diffusion");
    expect(chatsWith(s, "wait your turn")[0]!.at).toBeGreaterThanOrEqual(released!.at);
    await s.deps.scheduler.whenSettled();
    expect(readViolations(s.gpuDir)).toEqual([]);
  });

  it("closes with the server", async () => {
    const s = (stack = await startStack({ server: { ollamaGatewayPort: 0 } }));
    const root = s.server.ollamaGatewayUrl!;
    expect((await fetch(`${root}/api/version`)).status).toBe(200);
    await s.server.close();
    await expect(fetch(`${root}/api/version`)).rejects.toThrow();
  });
});

describe("diffugen serve with OLLAMA_GATEWAY_PORT", () => {
  it("prints the second listener's address; the ollama client works there; SIGTERM closes both", async () => {
    box = await startFakeBox("gateway-port");
    serve = await startServe(box.env({ PORT: "0", HOST: "127.0.0.1", API_KEY: "", OLLAMA_GATEWAY_PORT: "0" }), box.dir);
    await serve.waitForOutput(/Ollama API also at (http:\/\/\S+)/);
    expect(serve.stdout()).toContain(`Ollama API at ${serve.url}/ollama`);
    const root = /Ollama API also at (http:\/\/\S+)/.exec(serve.stdout())![1]!;
    expect(serve.stdout()).toContain(`OLLAMA_HOST=${root.replace("http://", "")} ollama run ${LLM_MODEL}`);

    const client = new Ollama({ host: root.replace("http://", "") });
    expect((await client.list()).models.map((m) => m.name)).toContain(LLM_MODEL);
    expect((await client.chat({ model: LLM_MODEL, messages: [{ role: "user", content: "hi" }] })).message.content).toBe("You said: hi");

    serve.signal("SIGTERM");
    expect(await serve.exited).toEqual({ code: 0, signal: null });
    await expect(fetch(`${root}/api/version`)).rejects.toThrow();
  });

  it("a port already taken: exit 2, naming OLLAMA_GATEWAY_PORT", async () => {
    box = await startFakeBox("gateway-port-busy");
    const busy = String(box.ollama.port);
    await expect(startServe(box.env({ PORT: "0", HOST: "127.0.0.1", API_KEY: "", OLLAMA_GATEWAY_PORT: busy }), box.dir)).rejects.toThrow(/OLLAMA_GATEWAY_PORT/);
  });
});
