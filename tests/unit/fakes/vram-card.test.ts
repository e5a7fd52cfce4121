/**
 * The simulated GPU with a card (issue 15, "the simulated GPU learns capacities"): the claims
 * ledger of tests/fakes/fake-gpu.mjs, the fake nvidia-smi and rocm-smi reading it byte for byte,
 * the sd-cli and sd-server doubles claiming their need and failing with the real out-of-memory
 * output when the card has no room, and the fake Ollama's size_vram, claims and partial offload.
 * Without a card the strict rule stays as it was (the other tests in this folder).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  CARDS,
  claim,
  claimOf,
  claims,
  freeMiB,
  installNvidiaSmi,
  installRocmSmi,
  ledger,
  llmHolder,
  readOoms,
  readViolations,
  release,
  runningDiffusions,
  sdHolder,
  setCard,
  usedMiB,
  vramNeedFromEnv,
  vramNeedMiB,
} from "../../fakes/fake-gpu.mjs";
import { startFakeOllama, type FakeOllama } from "../../fakes/ollama-server.js";
import { readComputeApps, readFreeVramMiB } from "../../../src/llm/nvidia-smi.js";
import { freePort } from "../../helpers/ports.js";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const SD_CLI = path.join(REPO, "tests/fakes/sd-cli.mjs");
const SD_SERVER = path.join(REPO, "tests/fakes/sd-server.mjs");
const NVIDIA_SMI = path.join(REPO, "tests/fakes/nvidia-smi.mjs");
const GB = 1_000_000_000;
const MIB = 1024 * 1024;

const FAST = {
  FAKE_SD_LISTEN_MS: "5",
  FAKE_SD_STEP_MS: "5",
  FAKE_SD_LOAD_MS: "5",
  FAKE_SD_DECODE_MS: "5",
  FAKE_SD_COND_MS: "2",
  FAKE_SD_PREVIEW_GAP_MS: "0",
};

const tempDirs: string[] = [];
const children = new Set<ChildProcess>();
const ollamas = new Set<FakeOllama>();

afterEach(async () => {
  for (const o of ollamas) await o.close();
  ollamas.clear();
  const alive = [...children].filter((c) => c.exitCode === null && c.signalCode === null);
  for (const c of alive) c.kill("SIGKILL");
  await Promise.all(alive.map((c) => new Promise((resolve) => (c.exitCode !== null || c.signalCode !== null ? resolve(null) : c.once("close", resolve)))));
  children.clear();
});
afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(prefix = "vram-card-"): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** A GPU dir with a card, and a cwd with an SD 1.5 and an SDXL file (content ignored). */
function box(card: Parameters<typeof setCard>[1] = CARDS["12GB"]): { gpu: string; cwd: string } {
  const gpu = tempDir();
  if (card) setCard(gpu, card);
  const cwd = tempDir("vram-cwd-");
  fs.mkdirSync(path.join(cwd, "models"));
  fs.writeFileSync(path.join(cwd, "models/sd1-random.safetensors"), "");
  fs.writeFileSync(path.join(cwd, "models/sd_xl_base_1.0.safetensors"), "");
  return { gpu, cwd };
}

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("FAKE_")) env[k] = v;
  return { ...env, ...FAST, ...extra };
}

interface Proc {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  stdout(): string;
  stderr(): string;
  waitFor(text: string, timeoutMs?: number): Promise<void>;
}

function start(bin: string, args: string[], cwd: string, env: Record<string, string>): Proc {
  const child = spawn(bin, args, { cwd, env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString("latin1")));
  child.stderr?.on("data", (d: Buffer) => (err += d.toString("latin1")));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code, signal, stdout: out, stderr: err }));
  });
  return {
    child,
    done,
    stdout: () => out,
    stderr: () => err,
    async waitFor(text, timeoutMs = 10_000) {
      const until = Date.now() + timeoutMs;
      while (!out.includes(text)) {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited before printing ${JSON.stringify(text)}`);
        if (Date.now() > until) throw new Error(`timed out waiting for ${JSON.stringify(text)}`);
        await sleep(5);
      }
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(5);
  }
}

/** Runs the fake nvidia-smi (or a wrapper) and returns its exact bytes. */
function smi(bin: string, args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(bin, args, { env: childEnv(env), encoding: "latin1" });
  return { stdout: r.stdout, stderr: r.stderr, code: r.status };
}

/** A claim held by another (live) process, as an sd double holds one. */
function claimFromChild(gpu: string, holder: string, mib: number): ChildProcess {
  const script = `import("${path.join(REPO, "tests/fakes/fake-gpu.mjs")}").then((g) => { const r = g.claim(${JSON.stringify(gpu)}, { holder: ${JSON.stringify(holder)}, kind: "sd", mib: ${mib} }); process.stdout.write(JSON.stringify(r) + "\\n"); setInterval(() => {}, 1e6); });`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  children.add(child);
  return child;
}

// ---------------------------------------------------------------------------------------------

describe("the card's ledger", () => {
  it("counts the base plus every claim; refuses what does not fit, or grants what is free when partial", () => {
    const { gpu } = box({ totalMiB: 8188 });
    expect([usedMiB(gpu), freeMiB(gpu)]).toEqual([300, 7888]);
    expect(claim(gpu, { holder: llmHolder("qwen2.5:3b"), kind: "llm", mib: 2385, pid: 4242 })).toEqual({ ok: true, mib: 2385, wantedMiB: 2385, freeMiB: 7888 });
    expect([usedMiB(gpu), freeMiB(gpu)]).toEqual([2685, 5503]);
    const refused = claim(gpu, { holder: sdHolder(process.pid), kind: "sd", mib: 7000 });
    expect(refused).toMatchObject({ ok: false, mib: 0, wantedMiB: 7000, freeMiB: 5503 });
    expect(claimOf(gpu, sdHolder(process.pid))).toBeUndefined();
    expect(claim(gpu, { holder: "llm-big", kind: "llm", mib: 9000, partial: true })).toMatchObject({ ok: true, mib: 5503, wantedMiB: 9000 });
    expect(freeMiB(gpu)).toBe(0);
    release(gpu, "llm-big");
    // a second claim by the same holder replaces the first (a raise counts its own claim as free)
    expect(claim(gpu, { holder: llmHolder("qwen2.5:3b"), kind: "llm", mib: 4000, pid: 4242 })).toMatchObject({ ok: true, mib: 4000, freeMiB: 7888 });
    expect(ledger(gpu)).toMatchObject({ llmMiB: 4000, sdMiB: 0, usedMiB: 4300, freeMiB: 3888, processes: [{ pid: 4242, usedMiB: 4000 }] });
    release(gpu, llmHolder("qwen2.5:3b"));
    expect([usedMiB(gpu), freeMiB(gpu)]).toEqual([300, 7888]);
    expect(readViolations(gpu)).toEqual([]);
  });

  it("reserved memory is neither used nor free; without a card nothing is counted and every claim is granted", () => {
    const { gpu } = box({ totalMiB: 12288, baseMiB: 500, reservedMiB: 250 });
    expect([usedMiB(gpu), freeMiB(gpu)]).toEqual([500, 11538]);
    const strict = box(null).gpu;
    expect(claim(strict, { holder: "sd-1", kind: "sd", mib: 99999 }).ok).toBe(true);
    expect([usedMiB(strict), freeMiB(strict)]).toEqual([0, 0]);
  });

  it("a claim whose owner is dead no longer counts (an sd double killed with SIGKILL)", async () => {
    const { gpu } = box();
    const child = claimFromChild(gpu, "sd-child", 3000);
    await until(() => claims(gpu).length === 1, "the child's claim");
    expect(claims(gpu)[0]).toMatchObject({ holder: "sd-child", pid: child.pid, ownerPid: child.pid, mib: 3000 });
    expect(usedMiB(gpu)).toBe(3300);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("close", r));
    expect(claims(gpu)).toEqual([]);
    expect(usedMiB(gpu)).toBe(300);
    expect(fs.readdirSync(gpu)).toContain("claim-sd-child.json"); // left behind, ignored
  });

  it("claims are atomic across processes: six claimers of 3000 MiB on a 12 GB card, three get it", async () => {
    const { gpu } = box();
    const kids = Array.from({ length: 6 }, (_, i) => claimFromChild(gpu, `sd-race-${i}`, 3000));
    const answers = await Promise.all(
      kids.map(
        (c) =>
          new Promise<{ ok: boolean }>((resolve) => {
            let text = "";
            c.stdout?.on("data", (d: Buffer) => {
              text += d.toString();
              if (text.includes("\n")) resolve(JSON.parse(text) as { ok: boolean });
            });
          }),
      ),
    );
    expect(answers.filter((a) => a.ok)).toHaveLength(3); // 300 + 3 x 3000 <= 12288 < 300 + 4 x 3000
    expect(usedMiB(gpu)).toBe(9300);
  });

  it("the need table: SD 1.5 at 512 is 3000 MiB, SDXL at 1024 is 7000 MiB, growing with the pixels; FAKE_SD_VRAM_MIB overrides", () => {
    expect(vramNeedMiB({ version: "SD 1.x", width: 512, height: 512 })).toBe(3000);
    expect(vramNeedMiB({ version: "SD 1.x", width: 768, height: 768 })).toBe(4000);
    expect(vramNeedMiB({ version: "SDXL", width: 1024, height: 1024 })).toBe(7000);
    expect(vramNeedMiB({ version: "SDXL", width: 1024, height: 1024, vaeTiling: true })).toBe(5650);
    expect(vramNeedFromEnv("9000", 64, 64)).toBe(9000);
    expect(vramNeedFromEnv("1024x1024=9000,*=2500", 1024, 1024)).toBe(9000);
    expect(vramNeedFromEnv("1024x1024=9000,*=2500", 512, 512)).toBe(2500);
    expect(vramNeedFromEnv("1024x1024=9000", 512, 512)).toBeUndefined();
    expect(vramNeedFromEnv(undefined, 512, 512)).toBeUndefined();
  });
});

describe("fake nvidia-smi", () => {
  it("--query-gpu=memory.total,memory.used,memory.free: `total, used, free\\n`, exit 0", () => {
    const { gpu } = box(CARDS["8GB"]);
    const bin = installNvidiaSmi(gpu);
    expect(smi(bin, ["--query-gpu=memory.total,memory.used,memory.free", "--format=csv,noheader,nounits"])).toEqual({ stdout: "8188, 300, 7888\n", stderr: "", code: 0 });
    claim(gpu, { holder: llmHolder("qwen2.5:3b"), kind: "llm", mib: 2385, pid: 4242 });
    expect(smi(bin, ["--query-gpu=memory.total,memory.used,memory.free", "--format=csv,noheader,nounits"]).stdout).toBe("8188, 2685, 5503\n");
    // the fields in the order asked; the header keeps its units; values carry them unless nounits
    expect(smi(bin, ["--query-gpu=memory.free,memory.total", "--format=csv"]).stdout).toBe("memory.free [MiB], memory.total [MiB]\n5503 MiB, 8188 MiB\n");
    expect(smi(bin, ["--query-gpu=memory.used", "--format=csv,nounits"]).stdout).toBe("memory.used [MiB]\n2685\n");
    expect(smi(bin, ["--query-gpu", "index,name,driver_version,memory.reserved", "--format", "csv,noheader"]).stdout).toBe(
      "0, NVIDIA GeForce RTX 4060 Laptop GPU, 550.54.14, 0 MiB\n",
    );
    expect(smi(bin, ["-L"]).stdout).toBe("GPU 0: NVIDIA GeForce RTX 4060 Laptop GPU (UUID: GPU-5f3c1d2e-8a41-4b7e-9c0d-2e6f7a8b9c10)\n");
  });

  it("--query-compute-apps=pid,used_memory: one `pid, MiB` line per process, nothing at all when none", async () => {
    const { gpu } = box();
    const bin = installNvidiaSmi(gpu);
    const args = ["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"];
    expect(smi(bin, args)).toEqual({ stdout: "", stderr: "", code: 0 });
    expect(smi(bin, ["--query-compute-apps=pid,used_memory", "--format=csv"]).stdout).toBe("pid, used_gpu_memory [MiB]\n");
    claim(gpu, { holder: llmHolder("qwen2.5:3b"), kind: "llm", mib: 2385, pid: 4242, processName: "/usr/local/bin/ollama" });
    claim(gpu, { holder: llmHolder("qwen3:8b"), kind: "llm", mib: 1000, pid: 4242, processName: "/usr/local/bin/ollama" });
    const child = claimFromChild(gpu, "sd-child", 3000);
    await until(() => claims(gpu).length === 3, "the child's claim");
    expect(smi(bin, args).stdout).toBe(`4242, 3385\n${child.pid}, 3000\n`);
    expect(smi(bin, ["--query-compute-apps=pid,process_name,used_gpu_memory", "--format=csv,noheader"]).stdout).toBe(
      `4242, /usr/local/bin/ollama, 3385 MiB\n${child.pid}, ${claims(gpu)[2]?.processName}, 3000 MiB\n`,
    );
    expect(smi(bin, args, { FAKE_NVIDIA_SMI_PROCESS_MEMORY: "na" }).stdout).toBe(`4242, [N/A]\n${child.pid}, [N/A]\n`);
    // what the product reads
    expect(await readComputeApps(bin)).toEqual([
      { pid: 4242, usedMemoryMiB: 3385 },
      { pid: child.pid, usedMemoryMiB: 3000 },
    ]);
    expect(await readFreeVramMiB(bin)).toBe(12288 - 300 - 3385 - 3000);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("close", r));
    expect(smi(bin, args).stdout).toBe("4242, 3385\n");
  });

  it("fails as the real tool does: no card, a bad field, a bad command line, no driver", async () => {
    const strict = box(null).gpu;
    expect(smi(installNvidiaSmi(strict), ["--query-gpu=memory.free", "--format=csv,noheader,nounits"])).toEqual({
      stdout: "No devices were found\n",
      stderr: "",
      code: 6,
    });
    expect(smi(NVIDIA_SMI, ["-L"])).toMatchObject({ stdout: "No devices were found\n", code: 6 }); // no FAKE_GPU_DIR
    const { gpu } = box();
    const bin = installNvidiaSmi(gpu);
    expect(smi(bin, ["--query-gpu=memory.free,cuda_version", "--format=csv,noheader,nounits"])).toEqual({
      stdout: 'Field "cuda_version" is not a valid field to query.\n\n',
      stderr: "",
      code: 2,
    });
    expect(smi(bin, ["--query-gpu=memory.free"])).toMatchObject({ stdout: "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n", code: 2 });
    expect(smi(bin, ["--bogus"]).code).toBe(2);
    expect(smi(bin, ["-i", "1", "--query-gpu=memory.free", "--format=csv"])).toMatchObject({ stdout: "No devices were found\n", code: 6 });
    expect(smi(bin, ["-i", "0", "--query-gpu=memory.free", "--format=csv,noheader,nounits"]).stdout).toBe("11988\n");
    const broken = installNvidiaSmi(gpu, { env: { FAKE_NVIDIA_SMI_FAIL: "driver" } });
    expect(smi(broken, ["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])).toMatchObject({ code: 9 });
    expect(await readComputeApps(broken)).toBeUndefined();
    expect(await readFreeVramMiB(broken)).toBeUndefined();
    const hung = installNvidiaSmi(gpu, { env: { FAKE_NVIDIA_SMI_HANG: "1" } });
    expect(await readFreeVramMiB(hung, { timeoutMs: 300 })).toBeUndefined();
  });

  it("FAKE_NVIDIA_SMI_LOG counts the calls", () => {
    const { gpu } = box();
    const log = path.join(gpu, "smi.log");
    const bin = installNvidiaSmi(gpu, { env: { FAKE_NVIDIA_SMI_LOG: log } });
    smi(bin, ["--query-gpu=memory.free", "--format=csv,noheader,nounits"]);
    smi(bin, ["-L"]);
    expect(fs.readFileSync(log, "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { argv: string[] }).argv)).toEqual([
      ["--query-gpu=memory.free", "--format=csv,noheader,nounits"],
      ["-L"],
    ]);
  });
});

describe("fake rocm-smi", () => {
  it("--showmeminfo vram --json: Python's json.dumps of card0's total and used bytes, as strings", () => {
    const { gpu } = box(CARDS["8GB"]);
    const bin = installRocmSmi(gpu);
    claim(gpu, { holder: llmHolder("qwen2.5:3b"), kind: "llm", mib: 2385 });
    expect(smi(bin, ["--showmeminfo", "vram", "--json"])).toEqual({
      stdout: `{"card0": {"VRAM Total Memory (B)": "${8188 * MIB}", "VRAM Total Used Memory (B)": "${2685 * MIB}"}}\n`,
      stderr: "",
      code: 0,
    });
    const text = smi(bin, ["--showmeminfo", "vram"]).stdout;
    expect(text).toContain(`\nGPU[0]\t\t: VRAM Total Memory (B): ${8188 * MIB}\nGPU[0]\t\t: VRAM Total Used Memory (B): ${2685 * MIB}\n`);
    expect(text.split("\n").filter((l) => l.startsWith("=")).every((l) => l.length === 100)).toBe(true);
    expect(smi(installRocmSmi(box(null).gpu), ["--showmeminfo", "vram", "--json"])).toMatchObject({ code: 1 });
    expect(smi(bin, ["--showmeminfo", "bogus", "--json"]).code).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------

describe("sd-cli double on a card", () => {
  const sd15 = ["-m", "models/sd1-random.safetensors", "-W", "512", "-H", "512", "--steps", "4"];

  it("claims its need when the UNet loads, shows in nvidia-smi with its pid, and gives it back at exit", async () => {
    const { gpu, cwd } = box();
    claim(gpu, { holder: llmHolder("qwen2.5:3b"), kind: "llm", mib: 2385, pid: 4242 });
    const bin = installNvidiaSmi(gpu);
    const p = start(SD_CLI, sd15, cwd, { FAKE_GPU_DIR: gpu, FAKE_SD_STEP_MS: "150" });
    await p.waitFor("generating image: 1/1 - seed 42\n");
    await until(() => claimOf(gpu, sdHolder(p.child.pid!)) !== undefined, "the sd claim");
    expect(claimOf(gpu, sdHolder(p.child.pid!))).toMatchObject({ kind: "sd", pid: p.child.pid, mib: 3000 });
    expect(smi(bin, ["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]).stdout).toBe(`4242, 2385\n${p.child.pid}, 3000\n`);
    expect(smi(bin, ["--query-gpu=memory.total,memory.used,memory.free", "--format=csv,noheader,nounits"]).stdout).toBe("12288, 5685, 6603\n");
    const r = await p.done;
    expect(r.code).toBe(0);
    expect(claims(gpu).map((c) => c.holder)).toEqual([llmHolder("qwen2.5:3b")]);
    expect(runningDiffusions(gpu)).toEqual([]);
    expect(readViolations(gpu)).toEqual([]);
    expect(readOoms(gpu)).toEqual([]);
  });

  it("an LLM resident is no violation with a card: SD 1.5 at 512 fits beside 2.5 GB on 12 GB", async () => {
    const { gpu, cwd } = box();
    const ollama = await startFakeOllama({ gpuDir: gpu, resident: ["qwen2.5:3b"] });
    ollamas.add(ollama);
    const r = await start(SD_CLI, sd15, cwd, { FAKE_GPU_DIR: gpu }).done;
    expect(r.code).toBe(0);
    expect(fs.existsSync(path.join(cwd, "output.png"))).toBe(true);
    expect(readViolations(gpu)).toEqual([]);
    expect(readOoms(gpu)).toEqual([]);
  });

  it("no room: the real CUDA out-of-memory output at the UNet load, exit 1, one OOM recorded, no violation", async () => {
    const { gpu, cwd } = box(CARDS["8GB"]);
    claim(gpu, { holder: llmHolder("qwen2.5:3b"), kind: "llm", mib: 2385, pid: 4242 });
    const p = start(SD_CLI, ["-m", "models/sd_xl_base_1.0.safetensors", "-W", "1024", "-H", "1024", "--steps", "4"], cwd, { FAKE_GPU_DIR: gpu });
    const r = await p.done;
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/generating image: 1\/1 - seed 42\n$/);
    expect(r.stderr).toBe(
      "[ERROR] ggml_backend_cuda_buffer_type_alloc_buffer: allocating 4897.05 MiB on device 0: cudaMalloc failed: out of memory\n" +
        "[ERROR] model_manager.cpp:737  - model manager alloc params backend buffer failed, size = 4897.05MB\n" +
        "[ERROR] ggml_extend.hpp:1948 - unet prepare graph weights failed\n" +
        r.stderr.split("\n").at(-3) +
        "\n" +
        "[ERROR] main.cpp:1001 - generate failed\n",
    );
    expect(r.stderr).toMatch(/\[ERROR\] stable-diffusion\.cpp:5716 - sampling for image 1\/1 failed after [\d.]+s\n/);
    expect(readOoms(gpu)).toEqual([
      expect.objectContaining({ by: "sd-cli", pid: p.child.pid, reason: "no-room", needMiB: 7000, freeMiB: 8188 - 300 - 2385, what: "UNet load, SDXL 1024x1024" }),
    ]);
    expect(readViolations(gpu)).toEqual([]);
    expect(claims(gpu).filter((c) => c.kind === "sd")).toEqual([]);
    // alone on the card it fits
    release(gpu, llmHolder("qwen2.5:3b"));
    const alone = await start(SD_CLI, ["-m", "models/sd_xl_base_1.0.safetensors", "-W", "1024", "-H", "1024", "--steps", "2"], cwd, { FAKE_GPU_DIR: gpu }).done;
    expect(alone.code).toBe(0);
    expect(readOoms(gpu)).toHaveLength(1);
  });

  it("FAKE_SD_VRAM_MIB forces the need; --vae-tiling caps the pixel term", async () => {
    const { gpu, cwd } = box();
    const forced = start(SD_CLI, sd15, cwd, { FAKE_GPU_DIR: gpu, FAKE_SD_VRAM_MIB: "512x512=11000,*=100", FAKE_SD_STEP_MS: "100" });
    await until(() => claimOf(gpu, sdHolder(forced.child.pid!)) !== undefined, "the forced claim");
    expect(claimOf(gpu, sdHolder(forced.child.pid!))?.mib).toBe(11000);
    forced.child.kill("SIGKILL");
    await forced.done;
    const tiled = start(SD_CLI, ["-m", "models/sd_xl_base_1.0.safetensors", "-W", "1024", "-H", "1024", "--steps", "4", "--vae-tiling"], cwd, {
      FAKE_GPU_DIR: gpu,
      FAKE_SD_STEP_MS: "100",
    });
    await until(() => claimOf(gpu, sdHolder(tiled.child.pid!)) !== undefined, "the tiled claim");
    expect(claimOf(gpu, sdHolder(tiled.child.pid!))?.mib).toBe(5650);
    expect(usedMiB(gpu)).toBe(300 + 5650); // the SIGKILLed double's claim no longer counts
    tiled.child.kill("SIGTERM");
    expect((await tiled.done).signal).toBe("SIGTERM");
    expect(claims(gpu)).toEqual([]);
    expect(fs.readdirSync(gpu).filter((f) => f.startsWith(`claim-sd-${tiled.child.pid}`))).toEqual([]); // SIGTERM removes the file
  });

  it("FAKE_SD_OOM on a card: recorded as forced", async () => {
    const { gpu, cwd } = box();
    const r = await start(SD_CLI, sd15, cwd, { FAKE_GPU_DIR: gpu, FAKE_SD_OOM: "1" }).done;
    expect(r.code).toBe(1);
    expect(readOoms(gpu).map((o) => [o.reason, o.needMiB])).toEqual([["forced", null]]);
    expect(claims(gpu)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------


async function serve(cwd: string, gpu: string, extraArgs: string[] = [], env: Record<string, string> = {}): Promise<Proc & { port: number }> {
  const port = await freePort();
  const p = start(SD_SERVER, ["-m", "models/sd1-random.safetensors", "--listen-ip", "127.0.0.1", "--listen-port", String(port), ...extraArgs], cwd, {
    FAKE_GPU_DIR: gpu,
    ...env,
  });
  await p.waitFor(`listening on: http://127.0.0.1:${port}\n`);
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => (s.end(), resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (ok) return Object.assign(p, { port });
    if (i > 200) throw new Error("the sd-server double never accepted a connection");
    await sleep(5);
  }
}

function txt2img(port: number, body: Record<string, unknown>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(JSON.stringify({ prompt: "a red fox", steps: 2, seed: 42, ...body }));
    const req = http.request(
      { host: "127.0.0.1", port, method: "POST", path: "/sdapi/v1/txt2img", agent: false, headers: { "Content-Type": "application/json", "Content-Length": String(payload.length) } },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

describe("sd-server double on a card", () => {
  it("claims the first request's need, holds it between requests, raises it for a bigger size, gives it back at exit", async () => {
    const { gpu, cwd } = box();
    const p = await serve(cwd, gpu);
    expect(claims(gpu)).toEqual([]); // nothing loaded yet
    expect((await txt2img(p.port, { width: 512, height: 512 })).status).toBe(200);
    expect(claimOf(gpu, sdHolder(p.child.pid!))?.mib).toBe(3000);
    expect((await txt2img(p.port, { width: 256, height: 256 })).status).toBe(200);
    expect(claimOf(gpu, sdHolder(p.child.pid!))?.mib).toBe(3000); // never shrinks
    expect((await txt2img(p.port, { width: 768, height: 768 })).status).toBe(200);
    expect(claimOf(gpu, sdHolder(p.child.pid!))?.mib).toBe(4000);
    p.child.kill("SIGTERM");
    await p.done;
    expect(claims(gpu)).toEqual([]);
    expect(readViolations(gpu)).toEqual([]);
    expect(readOoms(gpu)).toEqual([]);
  });

  it("a raise with no room: cudaMalloc out of memory, `unet: failed to allocate the compute buffer`, 500; the server keeps serving", async () => {
    const { gpu, cwd } = box(CARDS["8GB"]);
    const p = await serve(cwd, gpu);
    expect((await txt2img(p.port, { width: 512, height: 512 })).status).toBe(200);
    claim(gpu, { holder: llmHolder("qwen2.5:3b"), kind: "llm", mib: 4000, pid: 4242 });
    // 1024x1024 needs 5400: 2400 more than the 3000 held, with 8188 - 300 - 3000 - 4000 = 888 free
    const reply = await txt2img(p.port, { width: 1024, height: 1024 });
    expect(reply).toEqual({ status: 500, body: '{"error":"generate_image returned no results"}' });
    expect(p.stderr()).toMatch(
      /\[ERROR\] ggml_backend_cuda_buffer_type_alloc_buffer: allocating 2400\.00 MiB on device 0: cudaMalloc failed: out of memory\n\[ERROR\] ggml_extend\.hpp:1876 - unet: failed to allocate the compute buffer\n\[ERROR\] stable-diffusion\.cpp:5716 - sampling for image 1\/1 failed after [\d.]+s\n$/,
    );
    expect(claimOf(gpu, sdHolder(p.child.pid!))?.mib).toBe(3000);
    expect(readOoms(gpu)).toEqual([expect.objectContaining({ by: "sd-server", reason: "no-room", needMiB: 5400, freeMiB: 3888, what: "compute buffer, SD 1.x 1024x1024" })]);
    expect((await txt2img(p.port, { width: 512, height: 512 })).status).toBe(200);
    expect(readViolations(gpu)).toEqual([]);
  });

  it("no room at the first load: the UNet out-of-memory output and 500, then an image once the LLM is gone", async () => {
    const { gpu, cwd } = box(CARDS["8GB"]);
    claim(gpu, { holder: llmHolder("big"), kind: "llm", mib: 6000, pid: 4242 });
    const p = await serve(cwd, gpu);
    expect((await txt2img(p.port, { width: 512, height: 512 })).status).toBe(500);
    expect(p.stderr()).toContain("[ERROR] ggml_backend_cuda_buffer_type_alloc_buffer: allocating 1640.25 MiB on device 0: cudaMalloc failed: out of memory\n");
    expect(readOoms(gpu).map((o) => [o.reason, o.needMiB, o.freeMiB])).toEqual([["no-room", 3000, 1888]]);
    expect(readViolations(gpu)).toEqual([]);
    release(gpu, llmHolder("big"));
    expect((await txt2img(p.port, { width: 512, height: 512 })).status).toBe(200);
    expect(claimOf(gpu, sdHolder(p.child.pid!))?.mib).toBe(3000);
  });

  it("--eager-load claims the -W/-H default size's need before listening, or exits 1 when it does not fit", async () => {
    const { gpu, cwd } = box();
    const p = await serve(cwd, gpu, ["--eager-load", "-W", "768", "-H", "768"]);
    expect(claimOf(gpu, sdHolder(p.child.pid!))?.mib).toBe(4000);
    p.child.kill("SIGKILL");
    await p.done;
    claim(gpu, { holder: llmHolder("big"), kind: "llm", mib: 10000, pid: 4242 });
    const r = await start(SD_SERVER, ["-m", "models/sd1-random.safetensors", "--listen-port", String(await freePort()), "--eager-load"], cwd, { FAKE_GPU_DIR: gpu }).done;
    expect(r.code).toBe(1);
    expect(r.stdout).not.toContain("listening on");
    expect(r.stderr).toMatch(/cudaMalloc failed: out of memory\n[\s\S]*model params eager load failed\n\[ERROR\] main\.cpp:92 {3}- new_sd_ctx_t failed\n$/);
    expect(readOoms(gpu).map((o) => [o.reason, o.what])).toEqual([["no-room", "eager load, SD 1.x 512x512"]]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("fake Ollama on a card", () => {
  async function ollama(gpu: string, opts: Parameters<typeof startFakeOllama>[0] = {}) {
    const o = await startFakeOllama({ gpuDir: gpu, ...opts });
    ollamas.add(o);
    return o;
  }
  const ps = async (o: FakeOllama) =>
    ((await (await fetch(`${o.url}/api/ps`)).json()) as { models: { name: string; size: number; size_vram: number }[] }).models.map((m) => ({
      name: m.name,
      size: m.size,
      size_vram: m.size_vram,
    }));
  const chat = (o: FakeOllama, model: string, extra: Record<string, unknown> = {}) =>
    fetch(`${o.url}/api/chat`, { method: "POST", body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], stream: false, ...extra }) });

  it("reports size and size_vram per model (modelSizes), and claims that much while listed, lingering included", async () => {
    const { gpu } = box();
    const o = await ollama(gpu, { installed: ["qwen2.5:3b", "qwen3:8b"], modelSizes: { "qwen2.5:3b": 2.5 * GB, "qwen3:8b": 6 * GB }, runnerPid: 4242, unloadLingerMs: 150 });
    expect((await chat(o, "qwen2.5:3b")).status).toBe(200);
    expect(await ps(o)).toEqual([{ name: "qwen2.5:3b", size: 2.5 * GB, size_vram: 2.5 * GB }]);
    expect(claimOf(gpu, llmHolder("qwen2.5:3b"))).toMatchObject({ kind: "llm", pid: 4242, mib: Math.ceil((2.5 * GB) / MIB) });
    expect(smi(installNvidiaSmi(gpu), ["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]).stdout).toBe("4242, 2385\n");
    await chat(o, "qwen2.5:3b", { messages: [], keep_alive: 0 });
    expect(claimOf(gpu, llmHolder("qwen2.5:3b"))).toBeDefined(); // still listed: still in VRAM
    await until(() => claimOf(gpu, llmHolder("qwen2.5:3b")) === undefined, "the claim to go with the listing");
    expect(await ps(o)).toEqual([]);
    expect(usedMiB(gpu)).toBe(300);
  });

  it("vramReleaseLagMs: the VRAM comes back a moment after the model left /api/ps; a reload meanwhile keeps its claim", async () => {
    const { gpu } = box();
    const o = await ollama(gpu, { resident: ["qwen2.5:3b"], vramReleaseLagMs: 150 });
    const bin = installNvidiaSmi(gpu);
    const free = () => smi(bin, ["--query-gpu=memory.free", "--format=csv,noheader,nounits"]).stdout;
    await chat(o, "qwen2.5:3b", { messages: [], keep_alive: 0 });
    expect(await ps(o)).toEqual([]);
    expect(free()).toBe(`${12288 - 300 - 2385}\n`);
    await until(() => usedMiB(gpu) === 300, "the VRAM to come back");
    expect(free()).toBe(`${12288 - 300}\n`);
    await chat(o, "qwen2.5:3b", { messages: [], keep_alive: 0 });
    expect((await chat(o, "qwen2.5:3b")).status).toBe(200); // reloaded within the lag
    await sleep(250);
    expect(claimOf(gpu, llmHolder("qwen2.5:3b"))?.mib).toBe(2385);
  });

  it("a model the card has no room for is partly offloaded (size_vram < size): no violation without an sd claim", async () => {
    const { gpu } = box(CARDS["8GB"]);
    const o = await ollama(gpu, { installed: ["qwen3:14b"], modelSizes: { "qwen3:14b": 10 * GB } });
    expect((await chat(o, "qwen3:14b")).status).toBe(200);
    expect(await ps(o)).toEqual([{ name: "qwen3:14b", size: 10 * GB, size_vram: 7888 * MIB }]);
    expect(freeMiB(gpu)).toBe(0);
    expect(readViolations(gpu)).toEqual([]);
  });

  it("loaded beside an sd double that leaves it no room: a violation (the LLM came back too early)", async () => {
    const { gpu } = box(CARDS["8GB"]);
    const sd = claimFromChild(gpu, sdHolder(99999), 7000);
    await until(() => claims(gpu).length === 1, "the sd claim");
    const o = await ollama(gpu);
    expect((await chat(o, "qwen2.5:3b")).status).toBe(200);
    expect((await ps(o))[0]?.size_vram).toBe(888 * MIB);
    const violations = readViolations(gpu);
    expect(violations).toHaveLength(1);
    expect(violations[0]).toMatchObject({ by: "ollama" });
    expect(violations[0]?.what).toContain("qwen2.5:3b loaded (chat request) with 888 of 2385 MiB in VRAM");
    sd.kill("SIGKILL");
  });

  it("a chat beside a diffusion that fits is no violation; a resident model claims at start; close gives everything back", async () => {
    const { gpu, cwd } = box();
    const o = await ollama(gpu, { resident: ["qwen2.5:3b"] });
    expect(claimOf(gpu, llmHolder("qwen2.5:3b"))?.mib).toBe(2385);
    const p = start(SD_CLI, ["-m", "models/sd1-random.safetensors", "--steps", "6"], cwd, { FAKE_GPU_DIR: gpu, FAKE_SD_STEP_MS: "80" });
    await until(() => claimOf(gpu, sdHolder(p.child.pid!)) !== undefined, "the sd claim");
    expect((await chat(o, "qwen2.5:3b")).status).toBe(200);
    expect((await p.done).code).toBe(0);
    expect(readViolations(gpu)).toEqual([]);
    expect(readOoms(gpu)).toEqual([]);
    await o.close();
    expect(claims(gpu)).toEqual([]);
  });
});
