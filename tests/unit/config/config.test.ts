import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../../src/config/index.js";

describe("loadConfig", () => {
  it("gives every documented default when nothing is set", () => {
    const config = loadConfig({});
    expect(config.server).toEqual({ port: 5199, host: "127.0.0.1" });
    expect(config.sd.bin).toBe("sd-cli");
    expect(config.sd.modelsDir).toBe(path.resolve("./models"));
    expect(config.sd.outputDir).toBe(path.resolve("./outputs"));
    expect(config.sd.loraDir).toBe(path.resolve("./models/loras"));
    expect(config.sd.timeoutMs).toBe(600_000);
    expect(config.sd.extraArgs).toEqual([]);
    expect(config.llm).toMatchObject({
      baseUrl: "http://127.0.0.1:11434",
      model: "qwen2.5:3b",
      keepAlive: -1,
      unloadTimeoutMs: 30_000,
    });
    // VRAM_POLICY unset: fit when a memory tool answers, else swap (decided where the tools are found).
    expect(config.gpu).toEqual({ maxQueue: 16, maxBatch: 8, vramPolicy: undefined, vramMarginMiB: 768, rocmSmi: undefined });
    expect(config.sd.serverBin).toBe("sd-server");
    expect(config.sd.backend).toBe("auto");
  });

  it("splits SD_EXTRA_ARGS into argv words, honouring quotes, without a shell", () => {
    const config = loadConfig({ SD_EXTRA_ARGS: `--vae-tiling --diffusion-fa --rpc "a b" $(rm -rf /)` });
    expect(config.sd.extraArgs).toEqual(["--vae-tiling", "--diffusion-fa", "--rpc", "a b", "$(rm", "-rf", "/)"]);
  });

  it("keeps a duration keep-alive as a string and a numeric one as a number", () => {
    expect(loadConfig({ LLM_KEEP_ALIVE: "5m" }).llm.keepAlive).toBe("5m");
    expect(loadConfig({ LLM_KEEP_ALIVE: "300" }).llm.keepAlive).toBe(300);
  });

  it("treats an empty variable as unset", () => {
    expect(loadConfig({ PORT: "", SD_THREADS: "" }).server.port).toBe(5199);
  });

  it("names every bad variable in one error", () => {
    let error: unknown;
    try {
      loadConfig({ PORT: "http", GENERATION_TIMEOUT_S: "-5", OLLAMA_BASE_URL: "not a url" });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const names = (error as ConfigError).problems.map((p) => p.variable).sort();
    expect(names).toEqual(["GENERATION_TIMEOUT_S", "OLLAMA_BASE_URL", "PORT"]);
    expect((error as ConfigError).message).toContain("PORT");
  });
});

describe("the diffusion backend and VRAM settings", () => {
  it("finds sd-server beside a given SD_CPP_BIN, refuses a bad SD_BACKEND or VRAM_POLICY naming the choices", () => {
    expect(loadConfig({ SD_CPP_BIN: "/opt/sd/bin/sd-cli" }).sd.serverBin).toBe("/opt/sd/bin/sd-server");
    expect(loadConfig({ SD_CPP_BIN: "/opt/sd/bin/sd-cli", SD_SERVER_BIN: "/usr/local/bin/sd-server" }).sd.serverBin).toBe("/usr/local/bin/sd-server");
    expect(() => loadConfig({ SD_BACKEND: "gpu" })).toThrow(/SD_BACKEND.*expected auto, cli .* or server/);
    expect(() => loadConfig({ VRAM_POLICY: "always" })).toThrow(/VRAM_POLICY.*expected swap .* or fit/);
    expect(loadConfig({ VRAM_POLICY: "fit", VRAM_MARGIN_MB: "1024" }).gpu).toMatchObject({ vramPolicy: "fit", vramMarginMiB: 1024 });
  });
});
