import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startFakeOllama, type FakeOllama } from "../fakes/ollama-server.js";
import { CARDS } from "../fakes/fake-gpu.mjs";
import { startServerStack, type ServerStack } from "../server/harness.js";
import { until } from "../helpers/until.js";
import { diffugenCommand, root } from "./helpers/diffugen-command.js";
import { closedPort } from "../helpers/ports.js";

/** The temp folder is outside the checkout: hints name the launcher by its absolute path. */
const cli = `node ${path.join(root, "bin", "diffugen.js")}`;

/**
 * `diffugen status` against a real server (in this process, on port 0), and without one:
 * what a user reads to know what holds the GPU, who waits, and which model files are missing.
 */

let dir: string;
let s: ServerStack | undefined;
let ollama: FakeOllama | undefined;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-status-"));
  fs.mkdirSync(path.join(dir, "bin"));
  fs.mkdirSync(path.join(dir, "models"));
});
afterEach(async () => {
  s?.server.cancelJobs();
  await s?.close();
  s = undefined;
  await ollama?.close();
  ollama = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});


/**
 * Runs `diffugen status` with only the environment given: PATH holds no nvidia-smi (a real
 * one on the test box must not leak in), and Ollama is unreachable unless a test says otherwise.
 */
async function status(args: string[], env: Record<string, string> = {}) {
  const command = diffugenCommand("status", ...args);
  return execa(command.file, command.args, {
    cwd: dir,
    reject: false,
    extendEnv: false,
    env: {
      PATH: path.join(dir, "bin"),
      MODELS_DIR: path.join(dir, "models"),
      DATA_DIR: path.join(dir, "data"),
      OLLAMA_BASE_URL: `http://127.0.0.1:${await closedPort()}`,
      ...env,
    },
  });
}


describe("diffugen status, with the server up", () => {
  it("shows the server, what is resident in VRAM, an empty queue, and the model files missing on the server", async () => {
    s = await startServerStack();
    const result = await status(["--url", s.url]);
    expect(result.exitCode, result.stderr).toBe(0);
    const out = result.stdout;
    expect(out).toContain(`DiffuGen server at ${s.url}: ok`);
    expect(out).toContain("sd-cli: stable-diffusion.cpp version master-827-97d2990+");
    expect(out).toContain("GPU: idle");
    expect(out).toContain("no swaps yet");
    expect(out).toMatch(/Ollama: resident in VRAM\n {2}qwen2\.5:3b {2}2\.5 GB of VRAM, all on the GPU/);
    expect(out).toContain("Queue: empty");
    // The server's registry, not this machine's (its MODELS_DIR here is empty).
    expect(out).toMatch(/Models on the server: 1 of \d+ ready/);
    expect(out).toContain(`flux-schnell  diffusionModel  ${path.join(s.stack.root, "models", "flux1-schnell-q8_0.gguf")}`);
    expect(out).not.toMatch(/sd15 {2}model/);
    expect(out).toContain(`${cli} models pull <name>`);
    // sd15 (the default) is ready on the server, sd-cli and Ollama too: nothing to do.
    expect(out).not.toContain("Next:");
  });

  it("shows the VRAM ledger on a card where drawings fit beside the LLM", async () => {
    s = await startServerStack({ card: CARDS["12GB"], ollama: { modelSizes: { "qwen2.5:3b": 2.5e9 } } });
    const answer = await s.client.images.generate({ prompt: "a fox", size: "64x64", steps: 2, refine: false } as never);
    expect(answer.data).toHaveLength(1);
    await s.stack.deps.scheduler.whenSettled();
    const result = await status(["--url", s.url]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toContain("VRAM policy: fit (1 swap avoided)");
    expect(result.stdout).toMatch(/VRAM: \d+\.\d of 12\.0 GB used \(LLMs 2\.3 GB, other \d+\.\d GB\), \d+\.\d GB free/);
    expect(result.stdout).toMatch(/last drawing: fits beside qwen2\.5:3b/);
  });

  it("sd-cli not found on the server: says so, and the command that installs it", async () => {
    s = await startServerStack({ env: { SD_CPP_BIN: path.join(dir, "no-such-sd-cli") } });
    const result = await status(["--url", s.url]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toContain(`DiffuGen server at ${s.url}: degraded`);
    expect(result.stdout).toContain(`sd-cli: not found (${path.join(dir, "no-such-sd-cli")})`);
    expect(result.stdout).toMatch(new RegExp(`\nNext:\n {2}${escape(cli)} setup +# downloads sd-cli`));
    const json = JSON.parse((await status(["--url", s.url, "--json"])).stdout);
    expect(json.nextSteps.map((step: { command: string }) => step.command)).toEqual([`${cli} setup`]);
  });

  it("while drawing: the job holding the GPU, the LLM out of VRAM, and the job waiting behind it", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_STEP_MS: "300" } });
    const url = s.url;
    const drawing = fetch(`${url}/v1/images/generations`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "a red fox", size: "64x64", steps: 40 }),
    }).catch((e: unknown) => e);
    const scheduler = s.stack.deps.scheduler;
    await until("the first job to hold the GPU", () => scheduler.state().gpu.kind === "diffusion");
    const waiting = fetch(`${url}/v1/images/generations`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: "a blue fox", size: "64x64", steps: 2, refine: false }),
    }).catch((e: unknown) => e);
    await until("the second job to queue", () => scheduler.state().queue.length === 1);

    const text = await status(["--url", url]);
    expect(text.exitCode, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/GPU: drawing \(job-[0-9a-f-]+\); LLM unloaded/);
    expect(text.stdout).toContain("Ollama: nothing resident in VRAM");
    expect(text.stdout).toContain("Queue: 1 waiting for the GPU");
    expect(text.stdout).toMatch(/1\. job-[0-9a-f-]+ {2}diffusion {2}waiting \d/);
    expect(text.stdout).toContain("1 swap (LLM out for drawing, then back)");
    expect(text.stdout).toMatch(/Jobs: 2 running, 2 since start/);
    // Nothing loaded behind DiffuGen's back: no gate line.
    expect(text.stdout).not.toContain("Gate:");

    const json = await status(["--url", url, "--json"]);
    expect(json.exitCode).toBe(0);
    const report = JSON.parse(json.stdout);
    expect(report.server.reachable).toBe(true);
    expect(report.server.health.scheduler.gpu.kind).toBe("diffusion");
    expect(report.server.health.scheduler.queue).toHaveLength(1);
    expect(report.server.health.ollama.resident).toEqual([]);
    // The bypass watchdog polls while the job draws, and has caught nothing.
    expect(report.server.health.gate).toEqual({ bypasses: 0, last: null, watching: true });
    expect(report.server.stats.queue.jobs).toHaveLength(1);
    expect(report.models.source).toBe("server");

    s.server.cancelJobs();
    await Promise.all([drawing, waiting]);
  });

  it("with API_KEY set on the server: its state needs the key (/health says only ok), and API_KEY sends it", async () => {
    s = await startServerStack({ server: { apiKey: "sekrit" } });
    const without = await status(["--url", s.url]);
    expect(without.exitCode).toBe(0);
    expect(without.stdout).toContain(`DiffuGen server at ${s.url}: ok (the rest only with its API key: set API_KEY)`);
    expect(without.stdout).toContain("export API_KEY=<the server's key>");
    expect(without.stdout).not.toContain("GPU:");
    const withKey = await status(["--url", s.url], { API_KEY: "sekrit" });
    expect(withKey.stdout).not.toContain("no statistics");
    expect(withKey.stdout).toContain("no swaps yet");
  });

  it("finds the server from DIFFUGEN_URL, else from HOST and PORT (0.0.0.0 reached on 127.0.0.1)", async () => {
    s = await startServerStack();
    const viaEnv = await status([], { DIFFUGEN_URL: s.url });
    expect(viaEnv.stdout).toContain(`DiffuGen server at ${s.url}: ok`);
    const viaConfig = await status([], { HOST: "0.0.0.0", PORT: String(s.server.port) });
    expect(viaConfig.exitCode).toBe(0);
    expect(viaConfig.stdout).toContain(`DiffuGen server at http://127.0.0.1:${s.server.port}: ok`);
  });
});

describe("diffugen status, without a server", () => {
  it("says so, then reads Ollama's resident models and the free VRAM directly, without loading or unloading anything", async () => {
    ollama = await startFakeOllama({ installed: ["qwen2.5:3b"], resident: ["qwen2.5:3b"] });
    const smi = path.join(dir, "nvidia-smi");
    fs.writeFileSync(smi, "#!/bin/sh\necho 6144\n", { mode: 0o755 });
    const port = await closedPort();
    const env = { OLLAMA_BASE_URL: ollama.url, NVIDIA_SMI: smi };
    const loadsBefore = ollama.stats.modelLoads;
    fs.writeFileSync(path.join(dir, "models", "v1-5-pruned-emaonly.safetensors"), "");

    const result = await status(["--url", `http://127.0.0.1:${port}`], env);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toContain(`No DiffuGen server answers at http://127.0.0.1:${port} (connection refused).`);
    expect(result.stdout).toMatch(new RegExp(`Ollama at ${ollama.url}: resident in VRAM\\n {2}qwen2\\.5:3b`));
    expect(result.stdout).toContain("Free VRAM: 6.4 GB (6144 MiB, nvidia-smi)");
    // This machine's MODELS_DIR: sd15 is there, flux-schnell's files are not.
    expect(result.stdout).toMatch(new RegExp(`Models in ${path.join(dir, "models")}: 1 of \\d+ ready`));
    expect(result.stdout).toContain(`flux-schnell  vae  ${path.join(dir, "models", "ae.safetensors")}`);

    const json = JSON.parse((await status(["--url", `http://127.0.0.1:${port}`, "--json"], env)).stdout);
    expect(json.server).toMatchObject({ reachable: false, error: "connection refused" });
    expect(json.direct.freeVramMiB).toBe(6144);
    expect(json.direct.ollama.resident.map((m: { name: string }) => m.name)).toEqual(["qwen2.5:3b"]);
    expect(json.models.source).toBe("local");

    expect(ollama.stats.load + ollama.stats.unload).toBe(0);
    expect(ollama.stats.modelLoads).toBe(loadsBefore);
  });

  it("without nvidia-smi the free VRAM is unknown, and that is said", async () => {
    ollama = await startFakeOllama({ installed: ["qwen2.5:3b"] });
    const result = await status(["--url", `http://127.0.0.1:${await closedPort()}`], { OLLAMA_BASE_URL: ollama.url });
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain(`Ollama at ${ollama.url}: nothing resident in VRAM`);
    expect(result.stdout).toContain("Free VRAM: unknown (no nvidia-smi; set NVIDIA_SMI to its path)");
  });

  it("neither the server nor Ollama answering is exit code 1, with both named", async () => {
    const port = await closedPort();
    const result = await status(["--url", `http://127.0.0.1:${port}`]);
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toContain(`No DiffuGen server answers at http://127.0.0.1:${port} (connection refused).`);
    expect(result.stdout).toMatch(/Ollama at http:\/\/127\.0\.0\.1:\d+: not reachable/);
    expect(result.stdout).toMatch(/Models in .*: 0 of \d+ ready/);
    // sd-cli is looked up here too (SD_CPP_BIN defaults to sd-cli on PATH, an empty folder here).
    expect(result.stdout).toContain("sd-cli: not found (SD_CPP_BIN=sd-cli)");
    // Each problem, and the command that fixes it.
    const next = result.stdout.slice(result.stdout.indexOf("\nNext:\n"));
    expect(next).toMatch(new RegExp(`\n {2}${escape(cli)} serve +# start the server`));
    expect(next).toMatch(/\n {2}ollama serve +# start Ollama/);
    expect(next).toMatch(/\n {2}ollama pull qwen2\.5:3b +#/);
    expect(next).toMatch(new RegExp(`\n {2}${escape(cli)} setup +#`));
    expect(next).toMatch(new RegExp(`\n {2}${escape(cli)} models pull sd15 +#`));
  });

  it("without a server: sd-cli found here, with its version, or found but not running", async () => {
    ollama = await startFakeOllama({ installed: ["qwen2.5:3b"] });
    const sd = path.join(dir, "bin", "sd-cli");
    fs.writeFileSync(sd, "#!/bin/sh\necho 'stable-diffusion.cpp version master-827-97d2990, commit 97d29908'\n", { mode: 0o755 });
    const port = await closedPort();
    const found = await status(["--url", `http://127.0.0.1:${port}`], { OLLAMA_BASE_URL: ollama.url });
    expect(found.stdout).toContain(`sd-cli: stable-diffusion.cpp version master-827-97d2990, commit 97d29908 (${sd})`);
    expect(found.stdout).not.toMatch(/ setup +#/);

    fs.writeFileSync(sd, "#!/bin/sh\necho \"sd-cli: /lib/x86_64-linux-gnu/libc.so.6: version \\\`GLIBC_2.38' not found\" >&2\nexit 1\n", { mode: 0o755 });
    const broken = await status(["--url", `http://127.0.0.1:${port}`], { OLLAMA_BASE_URL: ollama.url, SD_CPP_BIN: sd });
    expect(broken.stdout).toMatch(/sd-cli: .*sd-cli does not run \(--version failed \(exit code 1\).*GLIBC_2\.38/);
    expect(broken.stdout).toContain(`  ${sd} --version`);
    expect(broken.stdout).toMatch(/setup --force +#/);
    // Ollama is up and has the LLM: no Ollama step.
    expect(broken.stdout).not.toMatch(/ollama (serve|pull)/);
  });

  it("a --url that is not an http URL is a usage error", async () => {
    const result = await status(["--url", "localhost:5199"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("--url must be an http(s) URL, got 'localhost:5199'");
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
