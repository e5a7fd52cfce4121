import fs from "node:fs";
import path from "node:path";
import { PNG } from "pngjs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  InvalidGenerationParamsError,
  SdAbortedError,
  SdOutOfMemoryError,
  SdProcessError,
  SdSpawnError,
  SdTimeoutError,
  completePngInfo,
  generateImages,
  parseGenerationRequest,
  resolveGenerationParams,
  type GenerateImagesOptions,
  type GenerationParams,
  type GenerationResult,
  type SdEvent,
  type SdPreviewEvent,
} from "../../../src/diffusion/index.js";
import type { ModelFile } from "../../../src/models/index.js";
import { ModelFilesMissingError } from "../../../src/models/index.js";
import { readSpawns, readViolations } from "../../fakes/fake-gpu.mjs";
import { isAlive, listFiles, makeSandbox, repoRoot, type Sandbox } from "./helpers.js";

const fixturesDir = path.resolve(repoRoot, "../shared/fixtures/sd-cli");
const small = { prompt: "a cat", width: 64, height: 64, steps: 4, seed: 42 } as const;

let sb: Sandbox;
beforeEach(() => {
  sb = makeSandbox();
});
afterEach(() => sb.cleanup());

/**
 * A request as a caller resolves it before generateImages: parsed, the model's defaults
 * filled in and the seed drawn (resolveGenerationParams), the weights checked on disk.
 */
function resolve(request: Record<string, unknown>): { model: string; params: GenerationParams; files: ModelFile[] } {
  const entry = sb.registry.resolve(request.model as string | undefined);
  const params = resolveGenerationParams(parseGenerationRequest(request), entry);
  return { model: entry.name, params, files: sb.registry.assertFilesPresent(entry) };
}

/** What a run drew with (the resolved request), beside what generateImages returned. */
type Run = GenerationResult & { resolved: { model: string; params: GenerationParams } };

/**
 * Resolves the request and runs generateImages against the double, recording every event.
 * A request refused while resolving rejects `promise`, as one refused by generateImages does.
 */
async function run(
  request: Record<string, unknown>,
  env: Record<string, string> = {},
  options: Omit<GenerateImagesOptions, "sd" | "env" | "onEvent"> = {},
) {
  const events: SdEvent[] = [];
  const promise = (async (): Promise<Run> => {
    const { model, params, files } = resolve(request);
    const result = await generateImages(params, files, {
      sd: sb.config.sd,
      ...options,
      env: { FAKE_SD_STEP_MS: "5", FAKE_SD_LOAD_MS: "5", FAKE_SD_DECODE_MS: "5", FAKE_GPU_DIR: sb.gpuDir, ...env },
      onEvent: (e) => events.push(e),
    });
    return { ...result, resolved: { model, params } };
  })();
  return { events, promise };
}

function decodePng(file: string): PNG {
  return PNG.sync.read(fs.readFileSync(file));
}

function pidOf(events: SdEvent[]): number {
  const spawned = events.find((e) => e.type === "spawned");
  if (!spawned || spawned.type !== "spawned") throw new Error("no spawned event");
  return spawned.pid;
}

describe("generateImages against the sd-cli double", () => {
  it("generates a real PNG of the requested size, with progress in order", async () => {
    const { events, promise } = await run(small);
    const result = await promise;

    expect(result.resolved.model).toBe("sd15");
    expect(result.seeds).toEqual([42]);
    expect(result.images).toHaveLength(1);
    const [image] = result.images;
    expect(image).toMatchObject({ index: 0, seed: 42, width: 64, height: 64 });
    const png = decodePng(image?.path ?? "");
    expect([png.width, png.height]).toEqual([64, 64]);
    expect(path.dirname(image?.path ?? "")).toBe(sb.outputDir);
    expect(path.basename(image?.path ?? "")).toMatch(/^\d{8}T\d{9}Z-[0-9a-f]{8}\.png$/);

    expect(events[0]?.type).toBe("spawned");
    expect(events.filter((e) => e.type === "phase").map((e) => e.phase)).toEqual([
      "loading_model",
      "sampling",
      "decoding",
      "saving",
    ]);
    const steps = events.filter((e) => e.type === "step");
    expect(steps.map((e) => e.type === "step" && `${e.step}/${e.totalSteps}`)).toEqual(["1/4", "2/4", "3/4", "4/4"]);
    expect(steps.every((e) => e.type === "step" && e.secondsPerStep > 0 && e.etaSeconds >= 0)).toBe(true);
    const progress = events.map((e) => e.progress);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(events.at(-1)).toMatchObject({ type: "images_saved", saved: 1, total: 1, progress: 1 });

    expect(result.argv.slice(0, 3)).toEqual([sb.config.sd.bin, "-m", path.join(sb.modelsDir, "v1-5-pruned-emaonly.safetensors")]);
    expect(result.timings.spawnToFirstEventMs).toBeGreaterThan(0);
    expect(result.timings.exitToResultMs).toBeGreaterThanOrEqual(0);
    expect(result.timings.totalMs).toBeGreaterThan(0);
    expect(result.timings.samplingSeconds).toBeGreaterThan(0);
    expect(isAlive(pidOf(events))).toBe(false);
    expect(listFiles(sb.outputDir)).toEqual([path.basename(image?.path ?? "")]);
    expect(readViolations(sb.gpuDir)).toEqual([]);
  });

  it("returns every image of a batch with its own seed", async () => {
    const { events, promise } = await run({ ...small, batchCount: 2 });
    const result = await promise;
    expect(result.seeds).toEqual([42, 43]);
    expect(result.images.map((i) => [i.index, i.seed, path.basename(i.path).replace(/^.*-[0-9a-f]{8}/, "")])).toEqual([
      [0, 42, "_0.png"],
      [1, 43, "_1.png"],
    ]);
    for (const image of result.images) {
      const png = decodePng(image.path);
      expect([png.width, png.height]).toEqual([64, 64]);
    }
    expect(events.filter((e) => e.type === "sampling_started").map((e) => e.type === "sampling_started" && e.seed)).toEqual([
      42, 43,
    ]);
  });

  it("draws a random seed itself, passes it, and reports it", async () => {
    const { seed: _, ...request } = small;
    const result = await (await run(request)).promise;
    expect(result.resolved.params.randomSeed).toBe(true);
    expect(result.seeds).toEqual([result.resolved.params.seed]);
    expect(result.argv[result.argv.indexOf("-s") + 1]).toBe(String(result.resolved.params.seed));
  });

  it("runs img2img from an init image", async () => {
    const initImage = path.join(fixturesDir, "gen-basic.out.png");
    const result = await (await run({ ...small, initImage, strength: 0.5 })).promise;
    expect(result.argv).toEqual(expect.arrayContaining(["-i", initImage, "--strength", "0.5"]));
    expect(result.images[0]).toMatchObject({ width: 64, height: 64 });
  });

  it("emits previews that are always complete PNGs, and removes the preview file", async () => {
    const { events, promise } = await run(
      { ...small, steps: 8 },
      { FAKE_SD_STEP_MS: "15", FAKE_SD_PREVIEW_GAP_MS: "4" },
      { preview: "proj" },
    );
    const result = await promise;
    const previews = events.filter((e): e is SdPreviewEvent => e.type === "preview");
    expect(previews.length).toBeGreaterThan(0);
    for (const preview of previews) {
      expect(completePngInfo(preview.png)).toEqual({ width: 8, height: 8 });
      const png = PNG.sync.read(preview.png);
      expect([png.width, png.height]).toEqual([8, 8]);
    }
    // Each preview differs from the one before.
    for (let i = 1; i < previews.length; i++) expect(previews[i]?.png.equals(previews[i - 1]?.png ?? Buffer.alloc(0))).toBe(false);
    expect(listFiles(sb.outputDir)).toEqual(result.images.map((i) => path.basename(i.path)));
  });

  it("with --vae-tiling, counts the VAE tile bars as decoding, never as steps", async () => {
    const { events, promise } = await run({ ...small, width: 512, height: 512, vaeTiling: true });
    const result = await promise;
    expect(result.argv).toContain("--vae-tiling");
    expect(events.filter((e) => e.type === "step").map((e) => e.type === "step" && e.step)).toEqual([1, 2, 3, 4]);
    const tiles = events.filter((e) => e.type === "decode_progress" && e.unit === "tile");
    expect(tiles.length).toBeGreaterThan(1);
    expect(tiles.every((e) => e.phase === "decoding")).toBe(true);
  });

  it("survives junk on the streams (invalid UTF-8, NUL bytes, ANSI codes)", async () => {
    const { events, promise } = await run(small, { FAKE_SD_GARBAGE: "1" });
    const result = await promise;
    expect(result.images).toHaveLength(1);
    expect(events.filter((e) => e.type === "step").map((e) => e.type === "step" && e.step)).toEqual([1, 2, 3, 4]);
  });

  it("rejects a crash with sd-cli's own error line, and leaves no output", async () => {
    const { events, promise } = await run({ ...small, steps: 6 }, { FAKE_SD_CRASH_AT_STEP: "3" });
    const error = await promise.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SdProcessError);
    expect(error).not.toBeInstanceOf(SdOutOfMemoryError);
    expect((error as SdProcessError).signal).toBe("SIGABRT");
    expect((error as Error).message).toContain("CUDA error: an illegal memory access was encountered");
    expect(events.filter((e) => e.type === "step")).toHaveLength(2);
    expect(listFiles(sb.outputDir)).toEqual([]);
  });

  it("rejects a failed compute (exit 1) with its ERROR lines", async () => {
    const { promise } = await run(small, { FAKE_SD_CRASH_AT_STEP: "2", FAKE_SD_CRASH_MODE: "exit" });
    const error = await promise.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SdProcessError);
    expect((error as SdProcessError).exitCode).toBe(1);
    expect((error as Error).message).toContain("generate failed");
  });

  it("recognises running out of GPU memory", async () => {
    const { promise } = await run(small, { FAKE_SD_OOM: "1" });
    const error = await promise.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SdOutOfMemoryError);
    expect((error as SdOutOfMemoryError).oomLine).toContain("cudaMalloc failed: out of memory");
    expect((error as Error).message).toContain("out of memory");
    expect(listFiles(sb.outputDir)).toEqual([]);
  });

  it("times out a hung sd-cli, and the process is gone when it rejects", async () => {
    const started = Date.now();
    const { events, promise } = await run(small, { FAKE_SD_HANG_AT_STEP: "2" }, { timeoutMs: 600, preview: "proj" });
    const error = await promise.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SdTimeoutError);
    expect((error as Error).message).toContain("did not finish within");
    expect(Date.now() - started).toBeLessThan(5000);
    expect(isAlive(pidOf(events))).toBe(false);
    expect(listFiles(sb.outputDir)).toEqual([]);
  });

  it("stops sd-cli mid-sampling on abort: process gone, no output, no preview", async () => {
    const controller = new AbortController();
    const events: SdEvent[] = [];
    const { params, files } = resolve({ ...small, steps: 20 });
    const promise = generateImages(params, files, {
      sd: sb.config.sd,
      env: { FAKE_SD_STEP_MS: "100", FAKE_SD_LOAD_MS: "5", FAKE_GPU_DIR: sb.gpuDir },
      preview: "proj",
      signal: controller.signal,
      onEvent: (e) => {
        events.push(e);
        if (e.type === "step" && e.step === 3) controller.abort(new Error("client went away"));
      },
    });
    const error = await promise.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SdAbortedError);
    expect((error as Error).message).toContain("client went away");
    const pid = pidOf(events);
    expect(() => process.kill(pid, 0)).toThrow();
    expect(events.filter((e) => e.type === "step").length).toBeLessThan(20);
    expect(listFiles(sb.outputDir)).toEqual([]);
    // The double released the simulated GPU on the way out.
    expect(fs.readdirSync(sb.gpuDir).filter((f) => f.endsWith(".running"))).toEqual([]);
  });

  it("ends sd-cli and rethrows when an event listener throws", async () => {
    const events: SdEvent[] = [];
    const { params, files } = resolve({ ...small, steps: 20 });
    const promise = generateImages(params, files, {
      sd: sb.config.sd,
      env: { FAKE_SD_STEP_MS: "50" },
      onEvent: (e) => {
        events.push(e);
        if (e.type === "step") throw new Error("listener broke");
      },
    });
    await expect(promise).rejects.toThrow("listener broke");
    expect(isAlive(pidOf(events))).toBe(false);
    expect(listFiles(sb.outputDir)).toEqual([]);
  });
});

describe("what is refused before anything is spawned", () => {
  it("a missing model file: ModelFilesMissingError, and the double never ran", async () => {
    await (await run(small)).promise; // the double does record spawns here
    expect(readSpawns(sb.gpuDir)).toHaveLength(1);

    fs.rmSync(path.join(sb.modelsDir, "v1-5-pruned-emaonly.safetensors"));
    const { events, promise } = await run(small);
    await expect(promise).rejects.toBeInstanceOf(ModelFilesMissingError);
    expect(events).toEqual([]);
    expect(readSpawns(sb.gpuDir)).toHaveLength(1);
  });

  it("a missing init image", async () => {
    const { events, promise } = await run({ ...small, initImage: path.join(sb.dir, "nope.png") });
    const error = await promise.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidGenerationParamsError);
    expect((error as InvalidGenerationParamsError).param).toBe("initImage");
    expect(events).toEqual([]);
    expect(readSpawns(sb.gpuDir)).toEqual([]);
  });

  it("invalid params", async () => {
    for (const bad of [{ width: 100 }, { steps: 0 }, { steps: "abc" }, { cfgScale: 99 }, { prompt: "a\0b" }]) {
      const { promise } = await run({ ...small, ...bad });
      await expect(promise).rejects.toBeInstanceOf(InvalidGenerationParamsError);
    }
    expect(readSpawns(sb.gpuDir)).toEqual([]);
    expect(listFiles(sb.outputDir)).toEqual([]);
  });

  it("an already aborted signal", async () => {
    const controller = new AbortController();
    controller.abort();
    const { events, promise } = await run(small, {}, { signal: controller.signal });
    await expect(promise).rejects.toBeInstanceOf(SdAbortedError);
    expect(events).toEqual([]);
    expect(readSpawns(sb.gpuDir)).toEqual([]);
  });

  it("an sd-cli binary that does not exist: SdSpawnError naming it", async () => {
    const bin = path.join(sb.dir, "no-such-sd-cli");
    const { params, files } = resolve(small);
    const error = await generateImages(params, files, { sd: { ...sb.config.sd, bin } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SdSpawnError);
    expect((error as Error).message).toContain(bin);
    expect((error as SdSpawnError).code).toBe("ENOENT");
  });
});
