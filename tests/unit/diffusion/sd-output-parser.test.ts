import { describe, expect, it } from "vitest";
import { SdOutputParser } from "../../../src/diffusion/sd-output-parser.js";
import type { SdEvent, SdStepEvent } from "../../../src/diffusion/sd-events.js";
import {
  byStream,
  events,
  fixtureNames,
  parseChunks,
  parseWhole,
  readStream,
  readTimeline,
} from "./fixtures.js";

const names = fixtureNames();

function ofType<T extends SdEvent["type"]>(list: SdEvent[], type: T): Extract<SdEvent, { type: T }>[] {
  return list.filter((e): e is Extract<SdEvent, { type: T }> => e.type === type);
}

describe("SdOutputParser on real sd-cli captures", () => {
  it("has the captures to test against", () => {
    expect(names).toEqual(expect.arrayContaining(["gen-basic", "gen-batch2", "gen-preview-proj", "missing-model"]));
  });

  describe.each(names)("%s", (name) => {
    const reference = parseWhole(name);

    // help, unknown-flag and bad-sampler print the same 24 kB usage text: split it once.
    const sameStdoutAs = names.find((other) => readStream(other, "stdout").equals(readStream(name, "stdout")));
    if (sameStdoutAs === name) it("gives the same events however the stdout bytes are split in two", () => {
      const stdout = readStream(name, "stdout");
      const stderr = readStream(name, "stderr");
      const expected = events(reference);
      for (let cut = 0; cut <= stdout.length; cut++) {
        const got = events(
          parseChunks([
            ["stdout", stdout.subarray(0, cut)],
            ["stdout", stdout.subarray(cut)],
            ["stderr", stderr],
          ]),
        );
        if (JSON.stringify(got) !== JSON.stringify(expected)) {
          expect(got, `stdout split at byte ${cut}`).toEqual(expected);
        }
      }
    });

    it("gives the same events however the stderr bytes are split in two", () => {
      const stdout = readStream(name, "stdout");
      const stderr = readStream(name, "stderr");
      const expected = events(reference);
      for (let cut = 0; cut <= stderr.length; cut++) {
        const got = events(
          parseChunks([
            ["stdout", stdout],
            ["stderr", stderr.subarray(0, cut)],
            ["stderr", stderr.subarray(cut)],
          ]),
        );
        expect(got, `stderr split at byte ${cut}`).toEqual(expected);
      }
    });

    it("gives the same events, stream by stream, when replaying the real pipe chunks", () => {
      const replayed = parseChunks(readTimeline(name).map(([, stream, chunk]) => [stream, chunk]));
      const expected = byStream(reference);
      const got = byStream(replayed);
      // Stdout and stderr are separate pipes: only the order within each is defined, and
      // the first "loading_model" phase event comes with whichever speaks first.
      const own = (list: SdEvent[] | undefined) => list?.filter((e) => e.type !== "phase" || e.phase !== "loading_model");
      expect(own(got.stdout)).toEqual(own(expected.stdout));
      expect(own(got.stderr)?.map(({ type }) => type)).toEqual(own(expected.stderr)?.map(({ type }) => type));
      if (readStream(name, "stderr").length === 0) expect(events(replayed)).toEqual(events(reference));
    });

    it("gives the same events when every byte arrives on its own", () => {
      const chunks: [("stdout" | "stderr"), Buffer][] = [];
      for (const stream of ["stdout", "stderr"] as const) {
        const bytes = readStream(name, stream);
        for (let i = 0; i < bytes.length; i++) chunks.push([stream, bytes.subarray(i, i + 1)]);
      }
      expect(events(parseChunks(chunks))).toEqual(events(reference));
    });
  });

  describe("gen-basic (64x64, 4 steps, seed 42)", () => {
    const list = events(parseWhole("gen-basic"));
    const steps = ofType(list, "step");

    it("reports steps 1..4 with sd-cli's own step times and the real seed", () => {
      expect(steps.map((s) => s.step)).toEqual([1, 2, 3, 4]);
      expect(steps.map((s) => s.totalSteps)).toEqual([4, 4, 4, 4]);
      expect(steps.map((s) => s.secondsPerStep)).toEqual([5.37, 6.81, 6.59, 4.45]);
      expect(ofType(list, "sampling_started")).toMatchObject([{ imageIndex: 0, imageCount: 1, seed: 42 }]);
    });

    it("computes the ETA from the measured step rate, leaving out the step that includes the UNet's load", () => {
      // Step 1's 5.37 s counts the lazy UNet load (686 tensors after "generating image").
      expect(steps.map((s) => s.includesLoad)).toEqual([true, false, false, false]);
      // 5.37 × 3 left (a guess: nothing else measured yet), mean(6.81) × 2 left, mean(6.81, 6.59) × 1 left, 0 left
      expect(steps.map((s) => s.etaSeconds)).toEqual([16.11, 13.62, 6.7, 0]);
    });

    it("shows the UNet's lazy load as loading, with its own share of the progress, before sampling", () => {
      const started = list.findIndex((e) => e.type === "sampling_started");
      const sampling = list.findIndex((e) => e.type === "phase" && e.phase === "sampling");
      const firstStep = list.findIndex((e) => e.type === "step");
      expect(list[started]?.phase).toBe("loading_model");
      expect(sampling).toBe(firstStep - 1);
      const unet = ofType(list.slice(started, firstStep), "load_progress");
      expect(unet.map((l) => l.phase)).toEqual(Array(7).fill("loading_model"));
      // The text encoder fills the loading band's first half, the UNet its second half.
      expect(ofType(list, "load_progress")[0]?.progress).toBe(0.05);
      expect(unet.at(-1)?.progress).toBe(0.1);
      expect(unet[0]!.progress).toBeGreaterThan(0.05);
    });

    it("goes through the phases in order, and progress never goes back", () => {
      expect(ofType(list, "phase").map((e) => e.phase)).toEqual(["loading_model", "sampling", "decoding", "saving"]);
      const progress = list.map((e) => e.progress);
      expect(progress).toEqual([...progress].sort((a, b) => a - b));
      expect(progress[0]).toBe(0);
      expect(progress.at(-1)).toBe(1);
      expect(steps.map((s) => s.progress)).toEqual([0.3, 0.5, 0.7, 0.9]);
    });

    it("reports the saved path, the size and the model version", () => {
      expect(ofType(list, "image_saved")).toMatchObject([{ imageIndex: 0, path: "out.png", success: true }]);
      expect(ofType(list, "images_saved")).toMatchObject([{ saved: 1, total: 1 }]);
      expect(ofType(list, "image_size")).toMatchObject([{ width: 64, height: 64 }]);
      expect(ofType(list, "model_version")).toMatchObject([{ version: "SD 1.x" }]);
      expect(ofType(list, "sampling_completed")).toMatchObject([{ imageIndex: 0, seconds: 23.22 }]);
    });

    it("never counts a tensor-loading (#) bar as a step, whichever phase it falls in", () => {
      const loads = ofType(list, "load_progress");
      expect(loads.map((l) => `${l.current}/${l.total}`)).toEqual([
        "196/196",
        "44/686",
        "294/686",
        "438/686",
        "462/686",
        "498/686",
        "572/686",
        "686/686",
        "140/140",
      ]);
      // Weight loading is loading_model wherever it falls (the VAE's after "decoding 1 latents" too).
      expect(loads.map((l) => l.phase)).toEqual(Array(9).fill("loading_model"));
      // ...without sending the run's progress back.
      expect(loads.at(-1)?.progress).toBe(0.9);
      expect(loads[0]?.speed).toBe("1.14GB/s");
      expect(loads[5]?.speed).toBe("1.50GB/s");
      expect(steps.every((s) => s.totalSteps === 4)).toBe(true);
    });

    it("collects what the runner needs in its summary", () => {
      const parser = new SdOutputParser();
      parser.push("stdout", readStream("gen-basic", "stdout"));
      parser.end();
      expect(parser.summary).toMatchObject({
        seeds: [42],
        samplingSeconds: [23.22],
        generateSeconds: 27.27,
        width: 64,
        height: 64,
        modelVersion: "SD 1.x",
        saved: [{ imageIndex: 0, path: "out.png", success: true }],
        errorLines: [],
        outOfMemoryLine: undefined,
      });
    });
  });

  describe("gen-batch2 (-b 2)", () => {
    const list = events(parseWhole("gen-batch2"));

    it("reports two images with seeds 42 and 43 and a step bar per image", () => {
      expect(ofType(list, "sampling_started")).toMatchObject([
        { imageIndex: 0, imageCount: 2, seed: 42 },
        { imageIndex: 1, imageCount: 2, seed: 43 },
      ]);
      const steps = ofType(list, "step");
      expect(steps.map((s) => `${s.imageIndex}:${s.step}/${s.totalSteps}`)).toEqual([
        "0:1/4",
        "0:2/4",
        "0:3/4",
        "0:4/4",
        "1:1/4",
        "1:2/4",
        "1:3/4",
        "1:4/4",
      ]);
      expect(ofType(list, "image_saved").map((s) => s.path)).toEqual(["out_0.png", "out_1.png"]);
    });

    it("counts the images still to come in the ETA and in the progress", () => {
      const steps = ofType(list, "step");
      const first = steps[0] as SdStepEvent;
      // 3 steps left of image 1 + 4 of image 2, at 3.10 s/step.
      expect(first.etaSeconds).toBe(21.7);
      expect(steps.map((s) => s.progress)).toEqual([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]);
      expect(steps.at(-1)?.etaSeconds).toBe(0);
    });
  });

  describe("failures", () => {
    it("collects ERROR lines of a missing model (stderr) and its WARN (stdout)", () => {
      const parser = new SdOutputParser();
      parser.push("stdout", readStream("missing-model", "stdout"));
      const errs = parser.push("stderr", readStream("missing-model", "stderr"));
      parser.end();
      expect(errs.filter((e) => e.type === "log").map((e) => e.type === "log" && e.level)).toEqual(["error", "error"]);
      expect(parser.summary.errorLines).toEqual([
        "init model loader from file failed: '/nonexistent.safetensors'",
        "get sd version from file failed: '/nonexistent.safetensors'",
      ]);
      expect(parser.summary.warnings).toEqual(["file /nonexistent.safetensors not found"]);
    });

    it("keeps a C++ abort message (no log tag) in the stderr tail", () => {
      const parser = new SdOutputParser();
      parser.push("stderr", readStream("bad-steps", "stderr"));
      parser.end();
      expect(parser.summary.stderrTail).toEqual([
        "terminate called after throwing an instance of 'std::invalid_argument'",
        "  what():  stoi",
      ]);
    });

    it("recognises CUDA and Vulkan out-of-memory messages", () => {
      for (const line of [
        "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 5120.00 MiB on device 0: cudaMalloc failed: out of memory\n",
        "[ERROR] ggml_extend.hpp:1587 - unet alloc params backend buffer failed, num_tensors = 686\n",
        "ggml_gallocr_reserve_n: failed to allocate CUDA0 buffer of size 1073741824\n",
        "terminate called after throwing an instance of 'vk::OutOfDeviceMemoryError'\n  what():  vk::Device::allocateMemory: ErrorOutOfDeviceMemory\n",
      ]) {
        const parser = new SdOutputParser();
        parser.push("stderr", Buffer.from(line));
        parser.end();
        expect(parser.summary.outOfMemoryLine, line).toBeDefined();
      }
      const parser = new SdOutputParser();
      parser.push("stdout", readStream("gen-basic", "stdout"));
      expect(parser.summary.outOfMemoryLine).toBeUndefined();
    });
  });

  describe("bytes the captures do not show", () => {
    const bar = (cells: string, step: number, total: number, speed: string) =>
      `\r  |${cells.padEnd(50, " ")}| ${step}/${total} - ${speed}\x1b[K`;

    it("reports a step as soon as its bar is complete, not when the next one starts", () => {
      const parser = new SdOutputParser();
      parser.push("stdout", Buffer.from("[INFO ] stable-diffusion.cpp:5679 - generating image: 1/1 - seed 7\n"));
      const got = parser.push("stdout", Buffer.from(bar("============>", 1, 4, "1.20s/it")));
      // The first step is where sampling starts (weights may load lazily before it).
      expect(got).toMatchObject([{ type: "phase", phase: "sampling" }, { type: "step", step: 1, secondsPerStep: 1.2, includesLoad: false }]);
      // A build that omits \x1b[K after s/it bars: the unit completes the bar.
      const early = parser.push("stdout", Buffer.from("\r  |=========================>                        | 2/4 - 4.00it/s"));
      expect(early).toMatchObject([{ type: "step", step: 2, secondsPerStep: 0.25 }]);
      expect(parser.push("stdout", Buffer.from("\x1b[K\n"))).toEqual([]);
    });

    it("treats = bars after 'decoding N latents' as VAE tiles (--vae-tiling), not steps", () => {
      const parser = new SdOutputParser();
      let text = "[INFO ] stable-diffusion.cpp:5679 - generating image: 1/1 - seed 1\n";
      text += bar("=".repeat(50), 1, 1, "2.00it/s") + "\n";
      text += "[INFO ] stable-diffusion.cpp:5321 - decoding 1 latents\n";
      for (let t = 1; t <= 9; t++) text += bar("=".repeat(Math.floor((t * 50) / 9)), t, 9, "3.00it/s");
      text += "\n[INFO ] stable-diffusion.cpp:5387 - latent 1 decoded, taking 3.10s\n";
      const list = [...parser.push("stdout", Buffer.from(text)), ...parser.end()];
      expect(ofType(list, "step").map((s) => s.step)).toEqual([1]);
      expect(ofType(list, "decode_progress").map((d) => `${d.unit}:${d.current}/${d.total}`)).toEqual([
        ...Array.from({ length: 9 }, (_, i) => `tile:${i + 1}/9`),
        "latent:1/1",
      ]);
    });

    it("treats = bars before sampling (older builds' tensor loading) as loading", () => {
      const parser = new SdOutputParser();
      const list = parser.push("stdout", Buffer.from(bar("==========>", 120, 600, "9.50it/s")));
      expect(list.map((e) => e.type)).toEqual(["phase", "load_progress"]);
    });

    it("decodes a UTF-8 character split between chunks", () => {
      const line = Buffer.from("[INFO ] main.cpp:490  - save result image 0 to '/tmp/café-猫.png' (success)\n");
      const cut = line.indexOf(Buffer.from("猫")) + 1;
      const parser = new SdOutputParser();
      const list = [
        ...parser.push("stdout", line.subarray(0, cut)),
        ...parser.push("stdout", line.subarray(cut)),
      ];
      expect(ofType(list, "image_saved")).toMatchObject([{ path: "/tmp/café-猫.png", success: true }]);
    });

    it("reads a log line that follows a bar on the same line", () => {
      const parser = new SdOutputParser();
      parser.push("stdout", Buffer.from("[INFO ] x.cpp:1 - generating image: 1/1 - seed 3\n"));
      const list = parser.push(
        "stdout",
        Buffer.from(bar("=".repeat(50), 1, 1, "1.50s/it") + "[INFO ] x.cpp:2 - sampling completed, taking 1.50s\n"),
      );
      expect(list.map((e) => e.type)).toEqual(["phase", "step", "log", "sampling_completed"]);
    });

    it("reads a failed save", () => {
      const parser = new SdOutputParser();
      parser.push("stdout", Buffer.from("[INFO ] main.cpp:490  - save result image 0 to '/nope/out.png' (failure)\n"));
      expect(parser.summary.saved).toEqual([{ imageIndex: 0, path: "/nope/out.png", success: false }]);
    });
  });
});
