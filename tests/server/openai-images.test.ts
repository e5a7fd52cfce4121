import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { toFile } from "openai";
import type { ImageEditParamsNonStreaming, ImageEditParamsStreaming, ImageGenerateParamsNonStreaming, ImageGenerateParamsStreaming } from "openai/resources/images";
import { afterEach, describe, expect, it } from "vitest";
import { readSpawns, readViolations } from "../fakes/fake-gpu.mjs";
import { makePng, pngSize, startServerStack, type ServerStack } from "./harness.js";

let s: ServerStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

/** Our extras ride along in the body; the SDK's types do not know them. */
type Extras = Record<string, unknown>;
type Generate = ImageGenerateParamsNonStreaming & Extras;
type GenerateStream = ImageGenerateParamsStreaming & Extras;
type Edit = ImageEditParamsNonStreaming & Extras;

const uploads = () => fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("diffugen-upload-"));
/** Upload files made since `before` that are still there. */
const uploadsLeft = (before: string[]) => uploads().filter((f) => !before.includes(f));

describe("POST /v1/images/generations (official openai SDK)", () => {
  it("clip_skip reaches sd-cli as --clip-skip; a value out of range is a 400 naming clip_skip, and nothing runs", async () => {
    s = await startServerStack();
    await s.client.images.generate({ prompt: "a red fox", size: "64x64", steps: 2, clip_skip: 2 } as Generate);
    const [spawn] = readSpawns(s.stack.gpuDir);
    expect(spawn?.argv[spawn.argv.indexOf("--clip-skip") + 1]).toBe("2");

    const refused = await s.client.images.generate({ prompt: "a red fox", size: "64x64", clip_skip: 0 } as Generate).catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 400, param: "clip_skip" });
    expect(readSpawns(s.stack.gpuDir)).toHaveLength(1);
  });

  it("b64_json: a real PNG of the requested size, with the refined prompt as revised_prompt", async () => {
    s = await startServerStack();
    const res = await s.client.images.generate({ prompt: "a red fox", model: "dall-e-3", size: "64x64", steps: 3 } as Generate);

    expect(res.created).toBeTypeOf("number");
    expect(res.data).toHaveLength(1);
    const image = res.data![0]!;
    expect(image.revised_prompt).toBe("a red fox, highly detailed");
    expect(pngSize(Buffer.from(image.b64_json!, "base64"))).toEqual({ width: 64, height: 64 });
    expect(res.size).toBe("64x64");
    expect(res.output_format).toBe("png");
    // sd-cli drew the refined prompt with our steps.
    const [spawn] = readSpawns(s.stack.gpuDir);
    expect(spawn?.argv).toContain("a red fox, highly detailed");
    expect(spawn?.argv.join(" ")).toContain("--steps 3");
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });

  it("url: the image is served at /images/<file> as image/png; n → a batch; refine:false keeps the prompt", async () => {
    s = await startServerStack();
    const res = await s.client.images.generate({
      prompt: "a (red:1.2) fox",
      size: "64x64",
      n: 2,
      response_format: "url",
      steps: "2",
      seed: 42,
      refine: false,
    } as Generate);

    expect(res.data).toHaveLength(2);
    for (const item of res.data!) {
      expect(item.b64_json).toBeUndefined();
      expect(item.revised_prompt).toBe("a (red:1.2) fox");
      expect(item.url).toMatch(new RegExp(`^${s.url}/images/[^/]+\\.png$`));
      const fetched = await fetch(item.url!);
      expect(fetched.status).toBe(200);
      expect(fetched.headers.get("content-type")).toBe("image/png");
      expect(pngSize(Buffer.from(await fetched.arrayBuffer()))).toEqual({ width: 64, height: 64 });
    }
    expect((res.data as unknown as { seed: number }[]).map((d) => d.seed)).toEqual([42, 43]);
    expect(s.stack.ollama.stats.chat).toBe(0);
  });

  it("size auto = the model's default; PUBLIC_BASE_URL sets the image links", async () => {
    s = await startServerStack({ server: { publicBaseUrl: "https://draw.example.com/" } });
    const res = await s.client.images.generate({ prompt: "a fox", size: "auto", response_format: "url", steps: 1, refine: false } as Generate);
    expect(res.size).toBe("512x512");
    expect(res.data![0]!.url).toMatch(/^https:\/\/draw\.example\.com\/images\/[^/]+\.png$/);
  });

  it("stream: diffugen.progress events, partial images from real previews, then image_generation.completed", async () => {
    s = await startServerStack({ sdEnv: { FAKE_SD_STEP_MS: "60" } });
    const stream = await s.client.images.generate({
      prompt: "a red fox",
      size: "64x64",
      steps: 8,
      stream: true,
      partial_images: 2,
    } as GenerateStream);

    const events: { type: string; [k: string]: unknown }[] = [];
    for await (const event of stream) events.push(event as unknown as { type: string });
    const types = events.map((e) => e.type);

    const progress = events.filter((e) => e.type === "diffugen.progress");
    expect(progress.length).toBeGreaterThan(5);
    expect(progress.some((e) => (e.step as { current: number } | undefined)?.current === 8)).toBe(true);
    const partials = events.filter((e) => e.type === "image_generation.partial_image");
    expect(partials.length).toBeGreaterThanOrEqual(1);
    expect(partials.length).toBeLessThanOrEqual(2);
    partials.forEach((p, i) => {
      expect(p.partial_image_index).toBe(i);
      // A real preview PNG (latent resolution with --preview proj).
      const preview = pngSize(Buffer.from(p.b64_json as string, "base64"));
      expect(preview.width).toBeGreaterThan(0);
      // `size` is the size of the PNG it carries, not the 64x64 being drawn.
      expect(p.size).toBe(`${preview.width}x${preview.height}`);
    });
    const completed = events.filter((e) => e.type === "image_generation.completed");
    expect(completed).toHaveLength(1);
    expect(types.at(-1)).toBe("image_generation.completed");
    expect(completed[0]).toMatchObject({ size: "64x64", output_format: "png", revised_prompt: "a red fox, highly detailed" });
    expect(pngSize(Buffer.from(completed[0]!.b64_json as string, "base64"))).toEqual({ width: 64, height: 64 });
    // Progress lines stay small: only images are big.
    for (const e of progress) expect(JSON.stringify(e).length).toBeLessThan(400);
  });

  it("stream without partial_images sends none", async () => {
    s = await startServerStack();
    const stream = await s.client.images.generate({ prompt: "a fox", size: "64x64", steps: 3, stream: true } as GenerateStream);
    const types: string[] = [];
    for await (const event of stream) types.push((event as { type: string }).type);
    expect(types.filter((t) => t.endsWith("partial_image"))).toEqual([]);
    expect(types.at(-1)).toBe("image_generation.completed");
  });
});

describe("POST /v1/images/edits (multipart, img2img)", () => {
  it("runs img2img from the uploaded PNG and deletes the temporary file afterwards", async () => {
    s = await startServerStack();
    const before = uploads();
    const res = await s.client.images.edit({
      image: await toFile(makePng(64, 64), "fox.png", { type: "image/png" }),
      prompt: "make it snowy",
      size: "64x64",
      strength: "0.5",
      steps: "3",
    } as Edit);

    expect(pngSize(Buffer.from(res.data![0]!.b64_json!, "base64"))).toEqual({ width: 64, height: 64 });
    const argv = readSpawns(s.stack.gpuDir)[0]!.argv;
    const init = argv[argv.indexOf("-i") + 1]!;
    expect(path.basename(init)).toMatch(/^diffugen-upload-.*\.png$/);
    expect(argv[argv.indexOf("--strength") + 1]).toBe("0.5");
    // Deleted once the run is over (after the LLM reload).
    const deadline = Date.now() + 3_000;
    while (fs.existsSync(init) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(fs.existsSync(init)).toBe(false);
    expect(uploadsLeft(before)).toEqual([]);
  });

  it("image[] with no size: the upload's own size on the 64 grid", async () => {
    s = await startServerStack();
    const res = await s.client.images.edit({
      image: [await toFile(makePng(128, 64), "a.png", { type: "image/png" })],
      prompt: "a fox",
      steps: "2",
      response_format: "url",
    } as Edit);
    expect(res.size).toBe("128x64");
    const fetched = await fetch(res.data![0]!.url!);
    expect(pngSize(Buffer.from(await fetched.arrayBuffer()))).toEqual({ width: 128, height: 64 });
  });

  it("stream: image_edit.* events", async () => {
    s = await startServerStack();
    const stream = await s.client.images.edit({
      image: await toFile(makePng(64, 64), "fox.png", { type: "image/png" }),
      prompt: "make it snowy",
      size: "64x64",
      steps: "3",
      stream: true,
    } as ImageEditParamsStreaming & Extras);
    const types: string[] = [];
    for await (const event of stream) types.push((event as { type: string }).type);
    expect(types.at(-1)).toBe("image_edit.completed");
    expect(types).toContain("diffugen.progress");
  });

  it("refuses a file that is not a PNG or JPEG (by its bytes), before anything runs", async () => {
    s = await startServerStack();
    const before = uploads();
    const err = await s.client.images
      .edit({ image: await toFile(Buffer.from("GIF89a not really"), "x.png", { type: "image/png" }), prompt: "a fox" })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 400, param: "image", code: "invalid_image_format" });
    const truncated = makePng(64, 64).subarray(0, 60);
    const err2 = await s.client.images.edit({ image: await toFile(truncated, "x.png"), prompt: "a fox" }).catch((e: unknown) => e);
    expect(err2).toMatchObject({ status: 400, param: "image" });
    const missing = await fetch(`${s.url}/v1/images/edits`, { method: "POST", body: (() => { const f = new FormData(); f.set("prompt", "a fox"); return f; })() });
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { error: { param: string } }).error.param).toBe("image");
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);
    expect(uploadsLeft(before)).toEqual([]);
  });

  it("a rejected edit (unknown model) deletes its upload at once", async () => {
    s = await startServerStack();
    const before = uploads();
    const err = await s.client.images
      .edit({ image: await toFile(makePng(64, 64), "a.png"), prompt: "a fox", model: "midjourney" })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 404, param: "model", code: "model_not_found" });
    expect(uploadsLeft(before)).toEqual([]);
  });
});
