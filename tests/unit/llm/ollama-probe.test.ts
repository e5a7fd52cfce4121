import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { OllamaUnreachableError } from "../../../src/llm/errors.js";
import type { LlmConfig } from "../../../src/llm/ollama-client.js";
import { llmConfig } from "./llm-config.js";
import { OllamaProbe, checkOllama, type OllamaProbeOptions } from "../../../src/llm/ollama-probe.js";
import { startFakeOllama, type FakeOllama, type FakeOllamaOptions } from "../../fakes/ollama-server.js";

let tmp: string;
let ollama: FakeOllama | undefined;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ollama-probe-"));
});

afterEach(async () => {
  await ollama?.close();
  ollama = undefined;
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function fakeOllama(opts: FakeOllamaOptions = {}): Promise<FakeOllama> {
  ollama = await startFakeOllama(opts);
  return ollama;
}

/** PATH emptied so a real nvidia-smi on the test box does not leak in. */
function probe(llm: LlmConfig, opts: OllamaProbeOptions = {}): OllamaProbe {
  return new OllamaProbe(llm, { env: { PATH: "" }, ...opts });
}

/** A port nothing listens on. */
async function deadUrl(): Promise<string> {
  const fake = await startFakeOllama();
  const url = fake.url;
  await fake.close();
  return url;
}

describe("OllamaProbe", () => {
  it("lists the resident models without loading or unloading anything", async () => {
    const fake = await fakeOllama({ resident: ["qwen2.5:3b"] });
    const resident = await probe(llmConfig(fake.url)).listResident();
    expect(resident).toMatchObject([{ name: "qwen2.5:3b", fullyOnGpu: true }]);
    expect(fake.stats.load + fake.stats.unload).toBe(0);
    expect(fake.listed()).toEqual(["qwen2.5:3b"]);
  });

  it("reads Ollama's version", async () => {
    const fake = await fakeOllama();
    expect(await probe(llmConfig(fake.url)).version()).toMatch(/^\d+\.\d+/);
  });

  it("throws OllamaUnreachableError when Ollama is down", async () => {
    const p = probe(llmConfig(await deadUrl()));
    await expect(p.listResident()).rejects.toBeInstanceOf(OllamaUnreachableError);
    await expect(p.version()).rejects.toBeInstanceOf(OllamaUnreachableError);
  });

  it("reads free VRAM with the configured nvidia-smi, else the one on PATH, else none", async () => {
    const smi = path.join(tmp, "nvidia-smi");
    fs.writeFileSync(smi, "#!/bin/sh\necho 7421\necho 512\n", { mode: 0o755 });
    expect(await probe(llmConfig("http://127.0.0.1:1", { nvidiaSmi: smi })).freeVramMiB()).toBe(7421);
    expect(await probe(llmConfig("http://127.0.0.1:1"), { env: { PATH: tmp } }).freeVramMiB()).toBe(7421);
    expect(await probe(llmConfig("http://127.0.0.1:1")).freeVramMiB()).toBeUndefined();
  });
});

describe("health", () => {
  it("reports version and whether the model is installed", async () => {
    const fake = await fakeOllama();
    const health = await checkOllama(llmConfig(fake.url));
    expect(health).toMatchObject({ reachable: true, modelInstalled: true });
    expect(health.version).toMatch(/^\d+\.\d+/);
    expect(await probe(llmConfig(fake.url)).listResident()).toEqual([]);
  });

  it("reports a missing model and an unreachable server", async () => {
    const fake = await fakeOllama({ installed: ["llama3.2:1b"] });
    expect(await checkOllama(llmConfig(fake.url))).toMatchObject({ reachable: true, modelInstalled: false });
    expect(await checkOllama(llmConfig(await deadUrl()))).toMatchObject({ reachable: false });
  });
});
