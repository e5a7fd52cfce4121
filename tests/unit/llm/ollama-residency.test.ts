import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Ollama } from "ollama";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createChatOllama } from "../../../src/llm/chat-model.js";
import { LlmModelNotFoundError, UnloadTimeoutError } from "../../../src/llm/errors.js";
import { silentLlmLogger } from "../../../src/llm/logger.js";
import type { LlmConfig } from "../../../src/llm/ollama-client.js";
import { llmConfig } from "./llm-config.js";
import { OllamaProbe } from "../../../src/llm/ollama-probe.js";
import { OllamaResidency, type OllamaResidencyOptions } from "../../../src/llm/ollama-residency.js";
import { readViolations, residentModels } from "../../fakes/fake-gpu.mjs";
import { startFakeOllama, type FakeOllama, type FakeOllamaOptions } from "../../fakes/ollama-server.js";

let tmp: string;
let gpuDir: string;
let ollama: FakeOllama | undefined;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ollama-residency-"));
  gpuDir = path.join(tmp, "gpu");
  fs.mkdirSync(gpuDir);
});

afterEach(async () => {
  await ollama?.close();
  ollama = undefined;
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function fakeOllama(opts: FakeOllamaOptions = {}): Promise<FakeOllama> {
  ollama = await startFakeOllama({ gpuDir, ...opts });
  return ollama;
}

/** PATH emptied so a real nvidia-smi on the test box does not leak in. */
function residency(llm: LlmConfig, opts: Partial<OllamaResidencyOptions> = {}): OllamaResidency {
  return new OllamaResidency(llm, { logger: silentLlmLogger, env: { PATH: "" }, ...opts });
}

/** A port nothing listens on. */
async function deadUrl(): Promise<string> {
  const fake = await startFakeOllama();
  const url = fake.url;
  await fake.close();
  return url;
}

describe("OllamaResidency.unloadAll", () => {
  it("resolves only once /api/ps no longer lists the model (it lingers 300 ms after the unload call)", async () => {
    const fake = await fakeOllama({ resident: ["qwen2.5:3b"], unloadLingerMs: 300 });
    const started = Date.now();
    const report = await residency(llmConfig(fake.url)).unloadAll();
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(report).toMatchObject({ reachable: true, unloaded: ["qwen2.5:3b"] });
    expect(report.durationMs).toBeGreaterThanOrEqual(300);
    expect(report.freeVramMiB).toBeUndefined();
    expect(fake.listed()).toEqual([]);
    expect(residentModels(gpuDir)).toEqual([]);
    expect(fake.stats.unload).toBe(1);
    expect(fake.stats.ps).toBeGreaterThanOrEqual(3);
  });

  it("unloads every resident model, not just the configured one", async () => {
    const fake = await fakeOllama({ installed: ["qwen2.5:3b", "llava:7b"], resident: ["qwen2.5:3b", "llava:7b"], unloadLingerMs: 50 });
    const report = await residency(llmConfig(fake.url)).unloadAll();
    expect(report.unloaded.sort()).toEqual(["llava:7b", "qwen2.5:3b"]);
    expect(fake.listed()).toEqual([]);
  });

  it("also unloads models that another client loads (or reloads) while it waits", async () => {
    const fake = await fakeOllama({ installed: ["qwen2.5:3b", "llava:7b"], resident: ["qwen2.5:3b"], unloadLingerMs: 400 });
    const other = new Ollama({ host: fake.url });
    setTimeout(() => {
      void other.chat({ model: "llava:7b", messages: [], keep_alive: "5m" });
      void other.chat({ model: "qwen2.5:3b", messages: [{ role: "user", content: "hi" }], keep_alive: "5m" });
    }, 60);
    const report = await residency(llmConfig(fake.url)).unloadAll();
    expect(report.unloaded.sort()).toEqual(["llava:7b", "qwen2.5:3b"]);
    expect(fake.listed()).toEqual([]);
    expect(fake.stats.unload).toBeGreaterThanOrEqual(3);
  });

  it("does nothing when nothing is resident", async () => {
    const fake = await fakeOllama();
    expect(await residency(llmConfig(fake.url)).unloadAll()).toMatchObject({ reachable: true, unloaded: [] });
    expect(fake.stats.unload).toBe(0);
  });

  it("rejects with UnloadTimeoutError naming the model when the unload never completes", async () => {
    const fake = await fakeOllama({ resident: ["qwen2.5:3b"], unloadNeverCompletes: true });
    const started = Date.now();
    const err = await residency(llmConfig(fake.url, { unloadTimeoutMs: 700 })).unloadAll().catch((e: unknown) => e);
    const elapsed = Date.now() - started;
    expect(err).toBeInstanceOf(UnloadTimeoutError);
    expect((err as UnloadTimeoutError).models).toEqual(["qwen2.5:3b"]);
    expect((err as Error).message).toMatch(/qwen2\.5:3b.*700 ms/);
    expect(elapsed).toBeGreaterThanOrEqual(700);
    expect(elapsed).toBeLessThan(700 + 1_000);
  });

  it("resolves {reachable:false} when Ollama is down: nothing to unload", async () => {
    const report = await residency(llmConfig(await deadUrl())).unloadAll();
    expect(report).toMatchObject({ reachable: false, unloaded: [] });
  });

  it("stops waiting when the caller aborts", async () => {
    const fake = await fakeOllama({ resident: ["qwen2.5:3b"], unloadNeverCompletes: true });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 150);
    const started = Date.now();
    await expect(residency(llmConfig(fake.url, { unloadTimeoutMs: 10_000 })).unloadAll(ac.signal)).rejects.toMatchObject({ name: "AbortError" });
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it("reports free VRAM read with nvidia-smi", async () => {
    const fake = await fakeOllama({ resident: ["qwen2.5:3b"] });
    const smi = path.join(tmp, "nvidia-smi");
    fs.writeFileSync(smi, "#!/bin/sh\necho 7421\necho 512\n", { mode: 0o755 });
    const report = await residency(llmConfig(fake.url, { nvidiaSmi: smi })).unloadAll();
    expect(report.freeVramMiB).toBe(7421);
  });

  it("finds nvidia-smi on PATH when not configured", async () => {
    const fake = await fakeOllama();
    fs.writeFileSync(path.join(tmp, "nvidia-smi"), "#!/bin/sh\necho 6000\n", { mode: 0o755 });
    const report = await residency(llmConfig(fake.url), { env: { PATH: tmp } }).unloadAll();
    expect(report.freeVramMiB).toBe(6000);
  });
});

describe("OllamaResidency.unloadAll: the /api/ps poll (issue 14)", () => {
  const epochNow = () => performance.timeOrigin + performance.now();

  it("sees the model gone within a few ms of Ollama dropping it from /api/ps (strict double)", async () => {
    // Lingers that fall between the polls of a 50 ms → 100 ms back-off (seen 45-95 ms late there).
    const lateMs: number[] = [];
    for (const lingerMs of [160, 210, 270]) {
      const fake = await fakeOllama({ strict: true, unloadLingerMs: lingerMs, resident: ["qwen2.5:3b"] });
      await residency(llmConfig(fake.url)).unloadAll();
      const confirmedAt = epochNow();
      const unload = fake.requests.find((r) => r.kind === "unload")!;
      expect(unload.goneAt).toBeDefined();
      lateMs.push(confirmedAt - unload.goneAt!);
      await fake.close();
    }
    lateMs.sort((a, b) => a - b);
    expect(lateMs[1]).toBeLessThan(15);
  });

  it("backs off when the unload takes long: polls spread out after the first half second instead of hammering Ollama", async () => {
    const fake = await fakeOllama({ strict: true, unloadLingerMs: 2_500, resident: ["qwen2.5:3b"] });
    const report = await residency(llmConfig(fake.url, { unloadTimeoutMs: 10_000 })).unloadAll();
    const confirmedAt = epochNow();
    expect(report.unloaded).toEqual(["qwen2.5:3b"]);
    const unload = fake.requests.find((r) => r.kind === "unload")!;
    const polls = fake.requests.filter((r) => r.kind === "ps" && r.receivedAt > unload.receivedAt).map((r) => r.receivedAt - unload.receivedAt);
    const gaps = polls.slice(1).map((at, i) => at - polls[i]!);
    // Never more often than every few ms, even while the drop is expected.
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(2.5);
    // Once the drop is overdue (0.5 s), the pause is 50 ms, then 100 ms.
    const late = polls.filter((at) => at > 600);
    const lateGaps = late.slice(1).map((at, i) => at - late[i]!);
    expect(Math.min(...lateGaps)).toBeGreaterThanOrEqual(45);
    expect(late.length).toBeLessThanOrEqual(25);
    expect(polls.length).toBeLessThanOrEqual(500 / 2.5 + 25);
    // The last poll, after the back-off, still sees the drop within one pause.
    expect(confirmedAt - unload.goneAt!).toBeLessThan(120);
  });

  it("pollFastForMs 0 is the back-off alone (what benches compare against)", async () => {
    const fake = await fakeOllama({ strict: true, unloadLingerMs: 300, resident: ["qwen2.5:3b"] });
    await residency(llmConfig(fake.url), { pollFastForMs: 0 }).unloadAll();
    // 0 ms, then 50, 100, 100: polls at ~0, 50, 150, 250, 350.
    expect(fake.stats.ps).toBeLessThanOrEqual(7);
  });

  it("with nvidia-smi, still waits for free VRAM to stop rising after /api/ps is empty", async () => {
    const fake = await fakeOllama({ strict: true, unloadLingerMs: 50, resident: ["qwen2.5:3b"] });
    // Free VRAM as the driver reports it after the runner is gone: rising, then steady.
    const counter = path.join(tmp, "smi-calls");
    const smi = path.join(tmp, "nvidia-smi");
    fs.writeFileSync(
      smi,
      `#!/bin/sh\nn=$(cat "${counter}" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "${counter}"\n` +
        `case $n in 1) echo 3000;; 2) echo 5000;; 3) echo 7400;; *) echo 7410;; esac\n`,
      { mode: 0o755 },
    );
    const report = await residency(llmConfig(fake.url, { nvidiaSmi: smi })).unloadAll();
    expect(report.freeVramMiB).toBe(7410);
    expect(Number(fs.readFileSync(counter, "utf8"))).toBe(4);
    // Three 100 ms steps of the settle wait, on top of the unload itself.
    expect(report.durationMs).toBeGreaterThanOrEqual(50 + 300);
  });
});

describe("OllamaResidency.unloadAll: the LLM it loaded back goes first (issue 14)", () => {
  it("after its own reload, the configured LLM's unload call goes out with the /api/ps read, not after its answer", async () => {
    const fake = await fakeOllama({ strict: true, unloadLingerMs: 100, installed: ["qwen2.5:3b"] });
    const ctl = residency(llmConfig(fake.url));
    await ctl.reload();
    fake.resetStats();
    const before = fake.requests.length;
    await ctl.unloadAll();
    const [first, second] = fake.requests.slice(before);
    // Both arrive before either answer is back: the unload did not wait for the listing.
    expect(new Set([first?.kind, second?.kind])).toEqual(new Set(["ps", "unload"]));
    const ps = [first, second].find((r) => r?.kind === "ps")!;
    const unload = [first, second].find((r) => r?.kind === "unload")!;
    expect(unload.receivedAt).toBeLessThan(ps.finishedAt!);
    expect(fake.stats.unload).toBe(1);
    expect(fake.listed()).toEqual([]);
  });

  it("Ollama dropping it before the listing is read still counts it as held before: it comes back after the burst with the others", async () => {
    // No linger: the early unload can empty /api/ps before the listing is taken.
    const fake = await fakeOllama({ installed: ["qwen2.5:3b", "llama3.2:1b"], unloadLingerMs: 0 });
    const ctl = residency(llmConfig(fake.url));
    await ctl.reload();
    fake.preload("llama3.2:1b", { numCtx: 2048, keepAliveMs: 5 * 60_000 });
    for (let burst = 0; burst < 3; burst++) {
      const report = await ctl.unloadAll();
      expect(report.unloaded.sort()).toEqual(["llama3.2:1b", "qwen2.5:3b"]);
      expect(fake.listed()).toEqual([]);
      const back = await ctl.reload();
      // The configured LLM last: if both do not fit, it is the one that stays.
      expect(back.models).toEqual(["llama3.2:1b", "qwen2.5:3b"]);
      expect(fake.listed().sort()).toEqual(["llama3.2:1b", "qwen2.5:3b"]);
    }
  });

  it("without a reload of its own first it reads /api/ps before unloading anything (it does not know what is there)", async () => {
    const fake = await fakeOllama({ installed: ["qwen2.5:3b"], resident: ["qwen2.5:3b"] });
    await residency(llmConfig(fake.url)).unloadAll();
    const ps = fake.requests.find((r) => r.kind === "ps")!;
    const unload = fake.requests.find((r) => r.kind === "unload")!;
    expect(unload.receivedAt).toBeGreaterThanOrEqual(ps.finishedAt!);
  });
});

describe("OllamaResidency.reload", () => {
  it("loads the configured model with keep_alive and num_ctx, and finds it fully on the GPU", async () => {
    const fake = await fakeOllama();
    const report = await residency(llmConfig(fake.url, { keepAlive: "30m" })).reload();
    expect(report).toMatchObject({ reachable: true, model: "qwen2.5:3b", fullyOnGpu: true });
    expect(report.warning).toBeUndefined();
    const load = fake.requests.find((r) => r.kind === "load");
    expect(load?.body).toMatchObject({ model: "qwen2.5:3b", messages: [], keep_alive: "30m", options: { num_ctx: 8192 } });
    expect(fake.listed()).toEqual(["qwen2.5:3b"]);
  });

  it("warns when Ollama put part of the model on the CPU (size_vram < size)", async () => {
    const fake = await fakeOllama({ installed: [{ name: "qwen2.5:3b", size: 6e9, sizeVram: 4.5e9 }] });
    const report = await residency(llmConfig(fake.url)).reload();
    expect(report.fullyOnGpu).toBe(false);
    expect(report.warning).toMatch(/75% on the GPU/);
  });

  it("throws LlmModelNotFoundError telling how to install a model that is not installed", async () => {
    const fake = await fakeOllama({ installed: ["llama3.2:1b"] });
    const err = await residency(llmConfig(fake.url)).reload().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmModelNotFoundError);
    expect((err as Error).message).toContain("ollama pull qwen2.5:3b");
  });

  it("resolves {reachable:false} when Ollama is down", async () => {
    const report = await residency(llmConfig(await deadUrl())).reload();
    expect(report).toMatchObject({ reachable: false, model: "qwen2.5:3b" });
    expect(report.warning).toMatch(/not reachable/);
  });

  it("loads with the same options the chat calls use, so the first chat does not reload the model", async () => {
    const fake = await fakeOllama();
    const llm = llmConfig(fake.url, { keepAlive: "10m" });
    await residency(llm).reload();
    await createChatOllama(llm).invoke("hello");
    const load = fake.requests.find((r) => r.kind === "load");
    const chat = fake.requests.find((r) => r.kind === "chat");
    expect(chat?.body?.options).toMatchObject({ num_ctx: 8192 });
    expect(load?.body?.options).toEqual({ num_ctx: 8192 });
    expect(chat?.body?.keep_alive).toBe(load?.body?.keep_alive);
    expect(fake.stats.modelLoads).toBe(1);
  });

  it("does not send a load with keep_alive 0 (that would be an unload)", async () => {
    const fake = await fakeOllama();
    const report = await residency(llmConfig(fake.url, { keepAlive: 0 })).reload();
    expect(report.warning).toMatch(/LLM_KEEP_ALIVE is 0/);
    expect(fake.stats.load + fake.stats.unload).toBe(0);
  });

  it("goes unload → diffusion → reload without a violation on the simulated GPU", async () => {
    const fake = await fakeOllama({ resident: ["qwen2.5:3b"], unloadLingerMs: 100 });
    const ctl = residency(llmConfig(fake.url));
    await ctl.unloadAll();
    expect(residentModels(gpuDir)).toEqual([]);
    await ctl.reload();
    expect(residentModels(gpuDir)).toEqual(["qwen2.5:3b"]);
    expect(readViolations(gpuDir)).toEqual([]);
  });
});

describe("OllamaResidency: what comes back after a burst (LLM_RESTORE)", () => {
  /** What /api/ps lists, with each model's context length. */
  async function resident(fake: FakeOllama): Promise<Record<string, number | undefined>> {
    const models = await new OllamaProbe(llmConfig(fake.url)).listResident();
    return Object.fromEntries(models.map((m) => [m.name, m.contextLength]));
  }

  const loads = (fake: FakeOllama) => fake.requests.filter((r) => r.kind === "load").map((r) => r.body);

  /** qwen2.5:3b (the configured LLM, 8192) kept forever, and a chat client's llama3.2:1b (2048) with 5 min left. */
  async function twoResident(opts: FakeOllamaOptions = {}): Promise<FakeOllama> {
    const fake = await fakeOllama({ installed: ["qwen2.5:3b", "llama3.2:1b"], unloadLingerMs: 50, ...opts });
    fake.preload("qwen2.5:3b", { numCtx: 8192 });
    fake.preload("llama3.2:1b", { numCtx: 2048, keepAliveMs: 5 * 60_000 });
    return fake;
  }

  it("previous (the default): both models resident before are resident again, each with its context length", async () => {
    const fake = await twoResident();
    const ctl = residency(llmConfig(fake.url));
    await ctl.unloadAll();
    expect(fake.listed()).toEqual([]);
    fake.resetStats();

    const report = await ctl.reload();
    expect(await resident(fake)).toEqual({ "qwen2.5:3b": 8192, "llama3.2:1b": 2048 });
    expect(report).toMatchObject({ reachable: true, model: "qwen2.5:3b", models: ["llama3.2:1b", "qwen2.5:3b"], failed: [], fullyOnGpu: true });
    expect(report.warning).toBeUndefined();
    // The one that would leave first loads first: if both do not fit, Ollama evicts it, not the LLM kept forever.
    const [llama, qwen] = loads(fake);
    expect(llama).toMatchObject({ model: "llama3.2:1b", messages: [], options: { num_ctx: 2048 } });
    // It keeps the time it had left (5 min, less the few ms of the burst), not forever.
    expect(llama?.keep_alive).toBeGreaterThan(290);
    expect(llama?.keep_alive).toBeLessThanOrEqual(300);
    // The configured LLM with the configured options, as chat calls send them.
    expect(qwen).toMatchObject({ model: "qwen2.5:3b", keep_alive: -1, options: { num_ctx: 8192 } });
    expect(readViolations(gpuDir)).toEqual([]);
  });

  it("previous: loads them in the order they were used, as expires_at tells it", async () => {
    const fake = await fakeOllama({ installed: ["qwen2.5:3b", "llama3.2:1b", "phi3:mini"] });
    fake.preload("llama3.2:1b", { keepAliveMs: 4 * 60_000 });
    fake.preload("qwen2.5:3b", { numCtx: 8192 });
    fake.preload("phi3:mini", { keepAliveMs: 60_000 });
    const ctl = residency(llmConfig(fake.url));
    await ctl.unloadAll();
    fake.resetStats();
    const report = await ctl.reload();
    expect(loads(fake).map((b) => b?.model)).toEqual(["phi3:mini", "llama3.2:1b", "qwen2.5:3b"]);
    expect(report.models).toEqual(["phi3:mini", "llama3.2:1b", "qwen2.5:3b"]);
  });

  it("previous: the configured LLM alone when nothing was resident before the burst", async () => {
    const fake = await fakeOllama({ installed: ["qwen2.5:3b", "llama3.2:1b"] });
    const ctl = residency(llmConfig(fake.url));
    expect((await ctl.unloadAll()).unloaded).toEqual([]);
    const report = await ctl.reload();
    expect(report).toMatchObject({ reachable: true, model: "qwen2.5:3b", models: ["qwen2.5:3b"], failed: [] });
    expect(await resident(fake)).toEqual({ "qwen2.5:3b": 8192 });
  });

  it("previous: another client's model alone comes back alone; the configured LLM loads when it is next called", async () => {
    const fake = await fakeOllama({ installed: ["qwen2.5:3b", "llama3.2:1b"] });
    fake.preload("llama3.2:1b", { numCtx: 2048, keepAliveMs: 60_000 });
    const ctl = residency(llmConfig(fake.url));
    await ctl.unloadAll();
    const report = await ctl.reload();
    expect(await resident(fake)).toEqual({ "llama3.2:1b": 2048 });
    expect(report).toMatchObject({ model: "llama3.2:1b", models: ["llama3.2:1b"] });
  });

  it("default: LLM_MODEL only, whatever was resident before", async () => {
    const fake = await twoResident();
    const ctl = residency(llmConfig(fake.url, { restore: "default" }));
    await ctl.unloadAll();
    const report = await ctl.reload();
    expect(await resident(fake)).toEqual({ "qwen2.5:3b": 8192 });
    expect(report).toMatchObject({ reachable: true, model: "qwen2.5:3b", models: ["qwen2.5:3b"] });
  });

  it("none: nothing is loaded back and VRAM stays free", async () => {
    const fake = await twoResident();
    const ctl = residency(llmConfig(fake.url, { restore: "none" }));
    await ctl.unloadAll();
    fake.resetStats();
    const report = await ctl.reload();
    expect(report).toMatchObject({ reachable: true, models: [], failed: [] });
    expect(report.warning).toBeUndefined();
    expect(fake.listed()).toEqual([]);
    expect(fake.stats.load + fake.stats.modelLoads).toBe(0);
  });

  it("a model that cannot be loaded back (deleted meanwhile: 404) is reported, tried once, and the others still load", async () => {
    const fake = await twoResident();
    const ctl = residency(llmConfig(fake.url));
    await ctl.unloadAll();
    // llama3.2:1b loads first: Ollama answers as for a model deleted since the burst began.
    await fake.setFault({ kind: "status", status: 404, error: "model 'llama3.2:1b' not found" }, { on: ["load"], times: 1 });
    fake.resetStats();

    const report = await ctl.reload();
    expect(report).toMatchObject({
      reachable: true,
      model: "qwen2.5:3b",
      models: ["qwen2.5:3b"],
      failed: [{ model: "llama3.2:1b", error: expect.stringMatching(/not found/) }],
    });
    expect(report.warning).toMatch(/llama3\.2:1b could not be loaded back/);
    expect(await resident(fake)).toEqual({ "qwen2.5:3b": 8192 });
    expect(loads(fake).map((b) => b?.model)).toEqual(["llama3.2:1b", "qwen2.5:3b"]);
  });

  it("when nothing could be loaded back the reload fails (the scheduler counts it); the next try loads what was there", async () => {
    const fake = await fakeOllama({ installed: ["qwen2.5:3b", "llama3.2:1b"] });
    fake.preload("llama3.2:1b", { keepAliveMs: 60_000 });
    const ctl = residency(llmConfig(fake.url));
    await ctl.unloadAll();
    await fake.setFault({ kind: "status", status: 500, error: "llama runner process has terminated" }, { on: ["load"], times: 1 });
    await expect(ctl.reload()).rejects.toThrow(/llama runner process has terminated/);
    // Tried once, not in a loop.
    expect(fake.stats.load).toBe(1);
    // The next try (the next LLM call) still knows what was there before.
    expect((await ctl.reload()).models).toEqual(["llama3.2:1b"]);
  });
});
