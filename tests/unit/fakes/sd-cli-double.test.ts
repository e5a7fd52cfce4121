/**
 * The sd-cli test double (tests/fakes/sd-cli.mjs) against the captured runs of the real program
 * (shared/fixtures/sd-cli): same bytes on the same streams for the error cases, the same
 * sequence of log lines and bars for generations, real PNGs, and the failure knobs.
 */
import { describe, it, expect, afterEach, afterAll } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PNG } from "pngjs";
import { readSpawns, readViolations, runningDiffusions, setResidentModels } from "../../fakes/fake-gpu.mjs";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const SD = path.join(REPO, "tests/fakes/sd-cli.mjs");
const FIXTURES = path.resolve(REPO, "../shared/fixtures/sd-cli");
const haveFixtures = fs.existsSync(path.join(FIXTURES, "help.stdout"));

/** Short phases so the whole file runs in a few seconds. */
const FAST = {
  FAKE_SD_STEP_MS: "5",
  FAKE_SD_LOAD_MS: "5",
  FAKE_SD_DECODE_MS: "5",
  FAKE_SD_COND_MS: "2",
  FAKE_SD_PREVIEW_GAP_MS: "0",
};

interface RunResult {
  stdout: Buffer;
  stderr: Buffer;
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Running {
  child: ChildProcess;
  done: Promise<RunResult>;
  /** Resolves once stdout contains `text`. */
  waitForStdout(text: string, timeoutMs?: number): Promise<void>;
  stdoutSoFar(): Buffer;
}

const started = new Set<ChildProcess>();

afterEach(async () => {
  const alive = [...started].filter((c) => c.exitCode === null && c.signalCode === null);
  for (const child of alive) {
    if (child.pid !== undefined) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  await Promise.all(alive.map((c) => new Promise((resolve) => (c.exitCode !== null || c.signalCode !== null ? resolve(null) : c.once("close", resolve)))));
  started.clear();
});

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("FAKE_")) env[k] = v;
  return { ...env, ...FAST, ...extra };
}

function start(args: string[], opts: { cwd: string; env?: Record<string, string> }): Running {
  const child = spawn(SD, args, { cwd: opts.cwd, env: childEnv(opts.env ?? {}), stdio: ["ignore", "pipe", "pipe"] });
  started.add(child);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const waiters: { text: string; resolve: () => void }[] = [];
  child.stdout?.on("data", (d: Buffer) => {
    out.push(d);
    const all = Buffer.concat(out).toString("latin1");
    for (const w of waiters.splice(0)) (all.includes(w.text) ? w.resolve() : waiters.push(w));
  });
  child.stderr?.on("data", (d: Buffer) => err.push(d));
  const done = new Promise<RunResult>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) =>
      resolve({ stdout: Buffer.concat(out), stderr: Buffer.concat(err), code, signal }),
    );
  });
  return {
    child,
    done,
    stdoutSoFar: () => Buffer.concat(out),
    waitForStdout(text, timeoutMs = 10_000) {
      if (Buffer.concat(out).toString("latin1").includes(text)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${JSON.stringify(text)}`)), timeoutMs);
        waiters.push({ text, resolve: () => (clearTimeout(timer), resolve()) });
        void done.then(() => {
          clearTimeout(timer);
          reject(new Error(`exited before printing ${JSON.stringify(text)}`));
        });
      });
    },
  };
}

function run(args: string[], opts: { cwd: string; env?: Record<string, string> }): Promise<RunResult> {
  return start(args, opts).done;
}

const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sd-cli-double-"));
  tempDirs.push(dir);
  return dir;
}

/** A temp cwd holding models/sd1-random.safetensors, like the fixture runs' cwd. */
function workDir(): string {
  const dir = tempDir();
  fs.mkdirSync(path.join(dir, "models"));
  fs.writeFileSync(path.join(dir, "models/sd1-random.safetensors"), "");
  return dir;
}

const fixture = (name: string) => fs.readFileSync(path.join(FIXTURES, name));
const fixtureArgs = (name: string): string[] =>
  (JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.cmd`), "utf8")) as { argv: string[] }).argv.slice(1);
/** The usage text names the program as invoked (argv[0]); the fixture was shortened to "sd-cli". */
const usageAsInvoked = () => Buffer.from(fixture("help.stdout").toString("utf8").replace("Usage: sd-cli [options]", `Usage: ${SD} [options]`));

/**
 * The stream as a parser sees it: split on \r and \n, `\x1b[K` dropped, durations and speeds
 * replaced, and a run of `#` loading bars reduced to its last one (how many redraws a load
 * gets depends on how long it takes, in the real program too).
 */
function normalise(stdout: Buffer): string[] {
  const lines: string[] = [];
  for (const raw of stdout.toString("utf8").split(/\r|\n/)) {
    if (raw === "") continue;
    const line = raw.replace(/\x1b\[K$/, "");
    const bar = /^ {2}\|([#=> ]{50})\| (\d+)\/(\d+) - [\d.]+(s\/it|it\/s|MB\/s|GB\/s)$/.exec(line);
    if (bar) {
      const cells = bar[1] ?? "";
      const kind = cells.includes("#") ? "#" : "=";
      if (kind === "#" && lines.at(-1)?.startsWith("#")) lines.pop();
      lines.push(`${kind}|${cells}| ${bar[2]}/${bar[3]}`);
    } else {
      lines.push(line.replace(/\d+\.\d\ds\b/g, "<t>"));
    }
  }
  return lines;
}

function readPng(file: string): PNG {
  return PNG.sync.read(fs.readFileSync(file));
}

const isValidUtf8 = (b: Buffer) => {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(b);
    return true;
  } catch {
    return false;
  }
};

describe.skipIf(!haveFixtures)("sd-cli double: same bytes as the real program", () => {
  it("--version", async () => {
    const r = await run(["--version"], { cwd: tempDir() });
    expect(r.stdout.equals(fixture("version.stdout"))).toBe(true);
    expect(r.stderr.length).toBe(0);
    expect(r.code).toBe(0);
  });

  it("--help prints the usage and exits 0", async () => {
    const r = await run(["--help"], { cwd: tempDir() });
    expect(r.stdout.equals(usageAsInvoked())).toBe(true);
    expect(r.stderr.length).toBe(0);
    expect(r.code).toBe(0);
  });

  it("an unknown flag: error on stderr, usage on stdout, exit 1", async () => {
    const r = await run(fixtureArgs("unknown-flag"), { cwd: tempDir() });
    expect(r.stderr.toString()).toBe(fixture("unknown-flag.stderr").toString());
    expect(r.stdout.equals(usageAsInvoked())).toBe(true);
    expect(r.code).toBe(1);
  });

  it("a bad sampler: two errors on stderr, usage on stdout, exit 1", async () => {
    const r = await run(fixtureArgs("bad-sampler"), { cwd: tempDir() });
    expect(r.stderr.toString()).toBe(fixture("bad-sampler.stderr").toString());
    expect(r.stdout.equals(usageAsInvoked())).toBe(true);
    expect(r.code).toBe(1);
  });

  it("a non-numeric number aborts with libstdc++'s terminate message", async () => {
    const r = await run(fixtureArgs("bad-steps"), { cwd: tempDir() });
    expect(r.stderr.toString()).toBe(fixture("bad-steps.stderr").toString());
    expect(r.stdout.length).toBe(0);
    expect(r.signal).toBe("SIGABRT");
  });

  it("a missing -m file: WARN on stdout, ERRORs on stderr, exit 1", async () => {
    const r = await run(fixtureArgs("missing-model"), { cwd: tempDir() });
    expect(r.stdout.toString()).toBe(fixture("missing-model.stdout").toString());
    expect(r.stderr.toString()).toBe(fixture("missing-model.stderr").toString());
    expect(r.code).toBe(1);
  });

  it("gen-basic: the same lines and bars in the same order, and a 64x64 PNG", async () => {
    const cwd = workDir();
    const r = await run(fixtureArgs("gen-basic"), { cwd });
    expect(r.code).toBe(0);
    expect(r.stderr.length).toBe(0);
    expect(normalise(r.stdout)).toEqual(normalise(fixture("gen-basic.stdout")));
    const png = readPng(path.join(cwd, "out.png"));
    expect([png.width, png.height]).toEqual([64, 64]);
    // like the real file: RGB with the generation parameters in a tEXt chunk
    const bytes = fs.readFileSync(path.join(cwd, "out.png"));
    expect(bytes[25]).toBe(2);
    expect(bytes.includes(Buffer.from("tEXtparameters\0a cat\nSteps: 4,"))).toBe(true);
  });

  it("gen-batch2: out_0.png and out_1.png with seeds 42 and 43", async () => {
    const cwd = workDir();
    const r = await run(fixtureArgs("gen-batch2"), { cwd });
    expect(r.code).toBe(0);
    expect(normalise(r.stdout)).toEqual(normalise(fixture("gen-batch2.stdout")));
    const a = fs.readFileSync(path.join(cwd, "out_0.png"));
    const b = fs.readFileSync(path.join(cwd, "out_1.png"));
    expect(a.includes(Buffer.from("Seed: 42,"))).toBe(true);
    expect(b.includes(Buffer.from("Seed: 43,"))).toBe(true);
    expect(readPng(path.join(cwd, "out_0.png")).data.equals(readPng(path.join(cwd, "out_1.png")).data)).toBe(false);
    expect(fs.existsSync(path.join(cwd, "out.png"))).toBe(false);
  });

  it("gen-preview-proj: same output, and an 8x8 preview PNG", async () => {
    const cwd = workDir();
    const r = await run(fixtureArgs("gen-preview-proj"), { cwd });
    expect(r.code).toBe(0);
    expect(normalise(r.stdout)).toEqual(normalise(fixture("gen-preview-proj.stdout")));
    const preview = readPng(path.join(cwd, "preview.png"));
    expect([preview.width, preview.height]).toEqual([8, 8]);
  });
});

describe("sd-cli double: generation", () => {
  it("rounds sizes up with the WARN and writes the aligned size", async () => {
    const cwd = workDir();
    const r = await run(["-m", "models/sd1-random.safetensors", "-W", "60", "-H", "70", "--steps", "2", "-o", "a.png"], { cwd });
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toContain("[WARN ] stable-diffusion.cpp:4215 - align generation request up 60x70 to 64x128 (multiple=64)\n");
    expect(r.stdout.toString()).toContain("generate_image 64x128\n");
    const png = readPng(path.join(cwd, "a.png"));
    expect([png.width, png.height]).toEqual([64, 128]);
  });

  it("writes ./output.png by default, creates a missing output folder, and differs by seed", async () => {
    const cwd = workDir();
    const base = ["-m", "models/sd1-random.safetensors", "-p", "a dog", "-W", "128", "-H", "64", "--steps", "2"];
    expect((await run(base, { cwd })).code).toBe(0);
    expect((await run([...base, "-s", "7", "-o", "deep/er/x.png"], { cwd })).code).toBe(0);
    const a = readPng(path.join(cwd, "output.png"));
    const b = readPng(path.join(cwd, "deep/er/x.png"));
    expect([a.width, a.height, b.width, b.height]).toEqual([128, 64, 128, 64]);
    expect(a.data.equals(b.data)).toBe(false);
  });

  it("prints the sampler's display name and the requested steps", async () => {
    const cwd = workDir();
    const r = await run(["-m", "models/sd1-random.safetensors", "--sampling-method", "dpm++2m", "--scheduler", "karras", "--steps", "3", "-W", "64", "-H", "64"], { cwd });
    const text = r.stdout.toString();
    expect(text).toContain("- get_sigmas with karras scheduler\n");
    expect(text).toContain("- sampling using DPM++ (2M) method\n");
    expect(normalise(r.stdout).filter((l) => l.startsWith("=|")).map((l) => l.slice(-3))).toEqual(["1/3", "2/3", "3/3"]);
  });

  it("a negative seed becomes a real one, printed in 'generating image'", async () => {
    const cwd = workDir();
    const r = await run(["-m", "models/sd1-random.safetensors", "-s", "-1", "--steps", "1", "-W", "64", "-H", "64"], { cwd });
    const m = /generating image: 1\/1 - seed (\d+)\n/.exec(r.stdout.toString());
    expect(m).not.toBeNull();
    expect(Number(m?.[1])).toBeGreaterThanOrEqual(0);
  });

  it("img2img: IMG2IMG, the VAE encoder loads first, steps shortened by strength", async () => {
    const cwd = workDir();
    const init = new PNG({ width: 64, height: 64 });
    fs.writeFileSync(path.join(cwd, "init.png"), PNG.sync.write(init));
    const r = await run(["-m", "models/sd1-random.safetensors", "-i", "init.png", "--strength", "0.5", "--steps", "8"], { cwd });
    expect(r.code).toBe(0);
    const lines = normalise(r.stdout);
    expect(lines).toContain("[INFO ] common.cpp:1762 - set width x height to 64 x 64");
    const i = lines.findIndex((l) => l.endsWith(" - IMG2IMG"));
    expect(i).toBeGreaterThan(0);
    expect(lines[i + 1]).toContain("target t_enc is 4 steps");
    expect(lines[i + 2]).toMatch(/^#\|#{50}\| 248\/248$/);
    expect(lines.filter((l) => l.startsWith("=|")).at(-1)).toMatch(/ 5\/5$/);
  });

  it("img2img with a missing init image fails before loading anything", async () => {
    const r = await run(["-m", "models/sd1-random.safetensors", "-i", "nope.png"], { cwd: workDir() });
    expect(r.code).toBe(1);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr.toString()).toBe("[ERROR] main.cpp:835  - load image from 'nope.png' failed\n");
  });

  it("--vae-tiling prints one '=' bar per tile while decoding", async () => {
    const cwd = workDir();
    const r = await run(["-m", "models/sd1-random.safetensors", "--vae-tiling", "--steps", "2", "-W", "512", "-H", "512"], { cwd });
    expect(r.code).toBe(0);
    const lines = normalise(r.stdout);
    const decoding = lines.findIndex((l) => l.endsWith("decoding 1 latents"));
    const tiles = lines.slice(decoding).filter((l) => l.startsWith("=|"));
    expect(tiles.map((l) => l.slice(l.lastIndexOf(" ") + 1))).toEqual(["1/9", "2/9", "3/9", "4/9", "5/9", "6/9", "7/9", "8/9", "9/9"]);
    expect(r.stdout.toString()).toContain("| 9/9 - ");
  });

  it("writes the bars one chunk per redraw, with \\n only on the last step", async () => {
    const cwd = workDir();
    const r = await run(["-m", "models/sd1-random.safetensors", "--steps", "20", "-W", "64", "-H", "64"], { cwd });
    const text = r.stdout.toString();
    expect(text).toMatch(/\r {2}\|==> {47}\| 1\/20 - [\d.]+it\/s\x1b\[K\r/);
    expect(text).toMatch(/\r {2}\|={50}\| 20\/20 - [\d.]+it\/s\x1b\[K\n\[INFO \]/);
    expect(text).not.toMatch(/ 0\/20 - /);
  });

  it("--preview vae overwrites one full-size file in place (same inode), readable when done", async () => {
    const cwd = workDir();
    const p = start(
      ["-m", "models/sd1-random.safetensors", "--steps", "6", "-W", "256", "-H", "256", "--preview", "vae", "--preview-path", "prev.png"],
      { cwd, env: { FAKE_SD_STEP_MS: "30", FAKE_SD_PREVIEW_GAP_MS: "25" } },
    );
    const file = path.join(cwd, "prev.png");
    const inodes = new Set<number>();
    const sizes = new Set<number>();
    let finished = false;
    void p.done.then(() => (finished = true));
    while (!finished) {
      try {
        const st = fs.statSync(file);
        inodes.add(st.ino);
        sizes.add(st.size);
      } catch {
        // not written yet
      }
      await new Promise((r) => setTimeout(r, 3));
    }
    const r = await p.done;
    expect(r.code).toBe(0);
    expect(inodes.size).toBe(1);
    const full = fs.statSync(file).size;
    expect([...sizes].some((s) => s < full)).toBe(true); // caught half-written
    const preview = readPng(file);
    expect([preview.width, preview.height]).toEqual([256, 256]);
  });

  it("FAKE_SD_TIMESTAMPS: one line per step and image, on the consumer's clock", async () => {
    const cwd = workDir();
    const stamps = path.join(cwd, "stamps.jsonl");
    const before = performance.timeOrigin + performance.now();
    const r = await run(["-m", "models/sd1-random.safetensors", "--steps", "3", "-b", "2", "-W", "64", "-H", "64"], {
      cwd,
      env: { FAKE_SD_TIMESTAMPS: stamps },
    });
    const after = performance.timeOrigin + performance.now();
    expect(r.code).toBe(0);
    const lines = fs
      .readFileSync(stamps, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { step: number; image: number; at: number });
    expect(lines.map((l) => `${l.image}:${l.step}`)).toEqual(["1:1", "1:2", "1:3", "2:1", "2:2", "2:3"]);
    for (const l of lines) expect(l.at > before && l.at < after).toBe(true);
    expect(lines.every((l, i) => i === 0 || l.at >= (lines[i - 1]?.at ?? 0))).toBe(true);
  });

  it("FAKE_SD_LIFETIME: its own process start (before Node boots) and exit, inside what the parent sees", async () => {
    const cwd = workDir();
    const file = path.join(cwd, "lifetime.jsonl");
    const spawnedAt = performance.timeOrigin + performance.now();
    const p = start(["-m", "models/sd1-random.safetensors", "--steps", "2", "-W", "64", "-H", "64"], { cwd, env: { FAKE_SD_LIFETIME: file } });
    const exitEventAt = new Promise<number>((resolve) => p.child.once("exit", () => resolve(performance.timeOrigin + performance.now())));
    const r = await p.done;
    const exitAt = await exitEventAt;
    expect(r.code).toBe(0);
    const lines = fs.readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { pid: number; startedAt: number; mainAt: number; exitedAt: number });
    expect(lines).toHaveLength(1);
    const life = lines[0]!;
    expect(life.pid).toBe(p.child.pid);
    expect(life.startedAt).toBeGreaterThan(spawnedAt);
    expect(life.startedAt).toBeLessThan(life.mainAt);
    expect(life.mainAt).toBeLessThan(life.exitedAt);
    expect(life.exitedAt).toBeLessThan(exitAt);
  });

  it("FAKE_SD_LIFETIME: also written when a signal ends it", async () => {
    const cwd = workDir();
    const gpu = tempDir();
    const file = path.join(cwd, "lifetime.jsonl");
    const p = start(["-m", "models/sd1-random.safetensors", "--steps", "50", "-W", "64", "-H", "64"], {
      cwd,
      env: { FAKE_SD_LIFETIME: file, FAKE_GPU_DIR: gpu, FAKE_SD_STEP_MS: "40" },
    });
    await p.waitForStdout("|");
    p.child.kill("SIGTERM");
    const r = await p.done;
    expect(r.signal).toBe("SIGTERM");
    const life = JSON.parse(fs.readFileSync(file, "utf8").trim()) as { pid: number; exitedAt: number };
    expect(life.pid).toBe(p.child.pid);
  });
});

describe("sd-cli double: failure modes", () => {
  it("a missing --vae warns at load, then fails with an ERROR when decoding", async () => {
    const cwd = tempDir();
    for (const f of ["flux1-schnell-q8_0.gguf", "clip_l.safetensors", "t5xxl.safetensors"]) fs.writeFileSync(path.join(cwd, f), "");
    const r = await run(
      ["--diffusion-model", "flux1-schnell-q8_0.gguf", "--clip_l", "clip_l.safetensors", "--t5xxl", "t5xxl.safetensors", "--vae", "ae.safetensors", "--cfg-scale", "1.0", "--steps", "2", "-W", "64", "-H", "64"],
      { cwd },
    );
    expect(r.code).toBe(1);
    const out = r.stdout.toString();
    expect(out).toContain("[WARN ] model_loader.cpp:254  - file ae.safetensors not found\n");
    expect(out).toContain("sampling using Euler method\n");
    expect(out).toContain("decoding 1 latents\n");
    expect(r.stderr.toString()).toMatch(/^\[ERROR\] model_loader\.cpp:\d+ +- tensor '.*' not in model file\n(\[ERROR\] .*\n)+\[ERROR\] main\.cpp:\d+ +- generate failed\n$/);
    expect(fs.readdirSync(cwd).some((f) => f.endsWith(".png"))).toBe(false);
  });

  it("FAKE_SD_OOM: CUDA out-of-memory when the UNet loads, exit 1, no image", async () => {
    const cwd = workDir();
    const r = await run(["-m", "models/sd1-random.safetensors", "--steps", "3", "-W", "64", "-H", "64"], { cwd, env: { FAKE_SD_OOM: "1" } });
    expect(r.code).toBe(1);
    expect(r.stdout.toString()).toMatch(/generating image: 1\/1 - seed 42\n$/);
    const err = r.stderr.toString();
    expect(err).toContain("[ERROR] ggml_backend_cuda_buffer_type_alloc_buffer: allocating 1640.25 MiB on device 0: cudaMalloc failed: out of memory\n");
    expect(err).toContain("alloc params backend buffer failed");
    expect(err).toMatch(/generate failed\n$/);
    expect(fs.existsSync(path.join(cwd, "output.png"))).toBe(false);
  });

  it("FAKE_SD_CRASH_AT_STEP: a CUDA error and SIGABRT during that step", async () => {
    const cwd = workDir();
    const r = await run(["-m", "models/sd1-random.safetensors", "--steps", "5", "-W", "64", "-H", "64"], { cwd, env: { FAKE_SD_CRASH_AT_STEP: "3" } });
    expect(r.signal).toBe("SIGABRT");
    const bars = normalise(r.stdout).filter((l) => l.startsWith("=|"));
    expect(bars.map((l) => l.slice(-3))).toEqual(["1/5", "2/5"]);
    expect(r.stderr.toString()).toMatch(/^\[ERROR\] CUDA error: .*\n(\[ERROR\] .*\n)*\S+ggml-cuda\.cu:\d+: CUDA error\n$/);
    expect(fs.existsSync(path.join(cwd, "output.png"))).toBe(false);
  });

  it("FAKE_SD_CRASH_MODE=exit: sampling fails with exit code 1", async () => {
    const cwd = workDir();
    const r = await run(["-m", "models/sd1-random.safetensors", "--steps", "5", "-W", "64", "-H", "64"], {
      cwd,
      env: { FAKE_SD_CRASH_AT_STEP: "2", FAKE_SD_CRASH_MODE: "exit" },
    });
    expect(r.code).toBe(1);
    expect(r.stderr.toString()).toMatch(/sampling for image 1\/1 failed after [\d.]+s\n\[ERROR\] main\.cpp:\d+ +- generate failed\n$/);
  });

  it("FAKE_SD_HANG_AT_STEP: stops printing and does not exit", async () => {
    const cwd = workDir();
    const p = start(["-m", "models/sd1-random.safetensors", "--steps", "4", "-W", "64", "-H", "64"], { cwd, env: { FAKE_SD_HANG_AT_STEP: "2" } });
    await p.waitForStdout("| 1/4 - ");
    await new Promise((r) => setTimeout(r, 300));
    expect(p.child.exitCode).toBeNull();
    expect(p.stdoutSoFar().toString()).not.toContain("2/4");
    p.child.kill("SIGKILL");
    expect((await p.done).signal).toBe("SIGKILL");
  });

  it("FAKE_SD_HANG: prints nothing and does not exit", async () => {
    const p = start(["-m", "models/sd1-random.safetensors"], { cwd: workDir(), env: { FAKE_SD_HANG: "1" } });
    await new Promise((r) => setTimeout(r, 400));
    expect(p.child.exitCode).toBeNull();
    expect(p.stdoutSoFar().length).toBe(0);
  });

  it("FAKE_SD_GARBAGE: junk bytes among the output, still a good image and exit 0", async () => {
    const cwd = workDir();
    const r = await run(["-m", "models/sd1-random.safetensors", "--steps", "2", "-W", "64", "-H", "64"], { cwd, env: { FAKE_SD_GARBAGE: "1" } });
    expect(r.code).toBe(0);
    expect(isValidUtf8(r.stdout)).toBe(false);
    expect(isValidUtf8(r.stderr)).toBe(false);
    expect(r.stdout.toString()).toContain("1/1 images saved\n");
    expect(normalise(r.stdout).filter((l) => l.startsWith("=|")).length).toBe(2);
    expect(readPng(path.join(cwd, "output.png")).width).toBe(64);
  });

  it("SIGTERM kills it at once, with no output file", async () => {
    const cwd = workDir();
    const p = start(["-m", "models/sd1-random.safetensors", "--steps", "50", "-W", "64", "-H", "64"], { cwd, env: { FAKE_SD_STEP_MS: "40" } });
    await p.waitForStdout("| 1/50 - ");
    p.child.kill("SIGTERM");
    const r = await p.done;
    expect(r.signal).toBe("SIGTERM");
    expect(r.stdout.toString()).not.toContain("sampling completed");
    expect(fs.existsSync(path.join(cwd, "output.png"))).toBe(false);
  });

  it("an output path under a file fails only after the whole generation", async () => {
    const cwd = workDir();
    fs.writeFileSync(path.join(cwd, "afile"), "x");
    const r = await run(["-m", "models/sd1-random.safetensors", "--steps", "2", "-W", "64", "-H", "64", "-o", "afile/out.png"], { cwd });
    expect(r.code).toBe(1);
    expect(r.stdout.toString()).toContain("generate_image completed in ");
    expect(r.stderr.toString()).toBe("[ERROR] main.cpp:441  - failed to create directory 'afile': Not a directory\n");
  });
});

describe("sd-cli double: the simulated GPU (FAKE_GPU_DIR)", () => {
  it("holds the GPU marker while it runs and releases it at exit; records the spawn", async () => {
    const gpu = tempDir();
    const cwd = workDir();
    const p = start(["-m", "models/sd1-random.safetensors", "--steps", "6", "-W", "64", "-H", "64"], {
      cwd,
      env: { FAKE_GPU_DIR: gpu, FAKE_SD_STEP_MS: "30" },
    });
    await p.waitForStdout("| 1/6 - ");
    expect(runningDiffusions(gpu)).toEqual([p.child.pid]);
    const r = await p.done;
    expect(r.code).toBe(0);
    expect(runningDiffusions(gpu)).toEqual([]);
    expect(fs.readdirSync(gpu).filter((f) => f.endsWith(".running"))).toEqual([]);
    expect(readSpawns(gpu).map((s) => s.pid)).toEqual([p.child.pid]);
    expect(readViolations(gpu)).toEqual([]);
  });

  it("an LLM still resident: a violation, then CUDA out of memory, exit 1", async () => {
    const gpu = tempDir();
    setResidentModels(gpu, ["qwen3:8b"]);
    const cwd = workDir();
    const r = await run(["-m", "models/sd1-random.safetensors", "--steps", "3", "-W", "64", "-H", "64"], { cwd, env: { FAKE_GPU_DIR: gpu } });
    expect(r.code).toBe(1);
    expect(r.stderr.toString()).toContain("cudaMalloc failed: out of memory");
    const violations = readViolations(gpu);
    expect(violations).toHaveLength(1);
    expect(violations[0]?.by).toBe("sd-cli");
    expect(violations[0]?.what).toContain("qwen3:8b");
    expect(fs.readdirSync(gpu).filter((f) => f.endsWith(".running"))).toEqual([]);
    expect(fs.existsSync(path.join(cwd, "output.png"))).toBe(false);
  });

  it("SIGTERM: the marker goes away and the parent still sees death by SIGTERM", async () => {
    const gpu = tempDir();
    const cwd = workDir();
    const p = start(["-m", "models/sd1-random.safetensors", "--steps", "50", "-W", "64", "-H", "64"], {
      cwd,
      env: { FAKE_GPU_DIR: gpu, FAKE_SD_STEP_MS: "40" },
    });
    await p.waitForStdout("| 1/50 - ");
    expect(fs.readdirSync(gpu).some((f) => f.endsWith(".running"))).toBe(true);
    p.child.kill("SIGTERM");
    const r = await p.done;
    expect(r.signal).toBe("SIGTERM");
    expect(fs.readdirSync(gpu).filter((f) => f.endsWith(".running"))).toEqual([]);
    expect(fs.existsSync(path.join(cwd, "output.png"))).toBe(false);
  });

  it("a crash (SIGABRT) releases the marker too", async () => {
    const gpu = tempDir();
    const r = await run(["-m", "models/sd1-random.safetensors", "--steps", "4", "-W", "64", "-H", "64"], {
      cwd: workDir(),
      env: { FAKE_GPU_DIR: gpu, FAKE_SD_CRASH_AT_STEP: "2" },
    });
    expect(r.signal).toBe("SIGABRT");
    expect(fs.readdirSync(gpu).filter((f) => f.endsWith(".running"))).toEqual([]);
  });
});
