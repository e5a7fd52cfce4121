import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startFakeBox, type FakeBox } from "./helpers/fake-box.js";
import { root } from "./helpers/diffugen-command.js";
import { startServe, type ServeProcess } from "./helpers/serve-process.js";
import { closedPort } from "../helpers/ports.js";

/**
 * `diffugen serve` says at start, after the listening line, whether it can chat and draw:
 * Ollama and its LLM, sd-cli, the model files, and what to run next.
 */

let serve: ServeProcess | undefined;
let box: FakeBox | undefined;
let dir: string | undefined;

afterEach(async () => {
  await serve?.kill();
  serve = undefined;
  await box?.close();
  box = undefined;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});


describe("diffugen serve's readiness summary", () => {
  it("on a bare box: nothing is there, and the commands that fix it, after the listening line", async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-ready-"));
    const ollamaUrl = `http://127.0.0.1:${await closedPort()}`;
    serve = await startServe(
      {
        PORT: "0",
        HOST: "127.0.0.1",
        API_KEY: "",
        SD_CPP_BIN: path.join(dir, "no-such-sd-cli"),
        MODELS_DIR: path.join(dir, "models"),
        DATA_DIR: path.join(dir, "data"),
        OUTPUT_DIR: path.join(dir, "outputs"),
        OLLAMA_BASE_URL: ollamaUrl,
        LLM_MODEL: "qwen2.5:3b",
        DEFAULT_IMAGE_MODEL: "sd15",
      },
      dir,
    );
    await serve.waitForOutput(/Next:[\s\S]*models pull sd15/);
    const out = serve.stdout();
    expect(out.indexOf("DiffuGen listening on")).toBe(0);
    expect(out).toContain("Not ready yet:");
    expect(out).toContain(`Ollama at ${ollamaUrl}: not reachable`);
    expect(out).toContain(`sd-cli: not found (SD_CPP_BIN=${path.join(dir, "no-such-sd-cli")})`);
    expect(out).toContain("models with all their files: none (the default is sd15)");
    // The temp folder is outside the checkout: the launcher by its absolute path.
    const cli = `node ${path.join(root, "bin", "diffugen.js")}`;
    expect(out).toMatch(/\n {2}ollama serve +# start Ollama/);
    expect(out).toMatch(/\n {2}ollama pull qwen2\.5:3b +#/);
    expect(out).toContain(`  ${cli} setup `);
    expect(out).toContain(`  ${cli} models pull sd15 `);
    expect(out).not.toContain("{");
    expect(out.split("\n").length).toBeLessThan(14);
  });

  it("on a ready box: one line says so, with the versions", async () => {
    box = await startFakeBox("ready");
    serve = await startServe(box.env({ PORT: "0", HOST: "127.0.0.1", API_KEY: "", DEFAULT_IMAGE_MODEL: "sd15" }), box.dir);
    await serve.waitForOutput(/models with all their files/);
    const out = serve.stdout();
    expect(out).toContain("Ready: Ollama, the LLM, sd-cli and the default model's files are all here.");
    expect(out).toMatch(/Ollama \S+ at http:\/\/127\.0\.0\.1:\d+: LLM qwen2\.5:3b installed/);
    expect(out).toContain("sd-cli: stable-diffusion.cpp version master-827-97d2990");
    expect(out).toContain("models with all their files: sd15 (default)");
    expect(out).not.toContain("Next:");
  });
});
