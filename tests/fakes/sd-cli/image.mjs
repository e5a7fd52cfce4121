// @ts-check
/**
 * Images the double writes: real 8-bit RGB PNGs (like stb_image_write's), with a deterministic
 * picture derived from the seed and the prompt, so different seeds give different files.
 */
import fs from "node:fs";
import zlib from "node:zlib";
import pngjs from "pngjs";

const { PNG } = pngjs;

/** FNV-1a over the UTF-8 bytes. @param {string} s */
function hash32(s) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, "utf8")) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** @param {number} a */
function mulberry32(a) {
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** @param {number} x @param {number} y @param {number} salt */
function noise8(x, y, salt) {
  let h = (Math.imul(x, 0x27d4eb2d) ^ Math.imul(y, 0x165667b1) ^ salt) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
  return (h >>> 24) & 0xff;
}

/**
 * The final picture: three sine fields whose frequencies and phases come from (seed, prompt).
 * Sampled in normalised coordinates, so a smaller rendering (the latent-size preview) is a
 * downscale of the full one.
 * @param {bigint} seed @param {string} prompt
 */
export function makePicture(seed, prompt) {
  const s = BigInt.asUintN(64, seed);
  const rnd = mulberry32((hash32(prompt) ^ Number(s & 0xffffffffn) ^ Math.imul(Number(s >> 32n), 0x9e3779b1)) >>> 0);
  const channels = [0, 1, 2].map(() => ({
    fx: 1 + rnd() * 9,
    fy: 1 + rnd() * 9,
    fxy: rnd() * 6,
    phase: rnd() * Math.PI * 2,
  }));
  const salt = (hash32(`${seed}:${prompt}`) & 0xffff) >>> 0;
  return {
    /** @param {number} u 0..1 @param {number} v 0..1 @param {number} c channel */
    value(u, v, c) {
      const k = /** @type {{fx: number, fy: number, fxy: number, phase: number}} */ (channels[c]);
      return 127.5 + 127.5 * Math.sin(k.fx * u * 6.283 + k.fy * v * 6.283 + k.fxy * u * v * 6.283 + k.phase);
    },
    salt,
  };
}

/**
 * RGBA pixels of the picture at `width` x `height`; `progress` < 1 blends in noise (a preview of
 * an unfinished sampling).
 * @param {ReturnType<typeof makePicture>} picture @param {number} width @param {number} height
 * @param {number} [progress] @param {number} [noiseSalt]
 */
export function renderPixels(picture, width, height, progress = 1, noiseSalt = 0) {
  const data = Buffer.alloc(width * height * 4);
  const mix = Math.max(0, Math.min(1, progress));
  for (let y = 0; y < height; y++) {
    const v = (y + 0.5) / height;
    for (let x = 0; x < width; x++) {
      const u = (x + 0.5) / width;
      const i = (y * width + x) * 4;
      for (let c = 0; c < 3; c++) {
        const clean = picture.value(u, v, c);
        const n = noise8(x + c * 7919, y, picture.salt ^ noiseSalt);
        data[i + c] = Math.round(clean * mix + n * (1 - mix));
      }
      data[i + 3] = 255;
    }
  }
  return data;
}

/**
 * An 8-bit RGB PNG; with `text`, a `tEXt` chunk `parameters` right after IHDR (sd-cli's
 * generation metadata).
 * @param {Buffer} rgba @param {number} width @param {number} height @param {string} [text]
 */
export function encodePng(rgba, width, height, text) {
  const png = new PNG({ width, height });
  rgba.copy(png.data);
  const bytes = PNG.sync.write(png, { colorType: 2, inputHasAlpha: true });
  if (text === undefined) return bytes;
  const data = Buffer.concat([Buffer.from("parameters\0", "latin1"), Buffer.from(text, "utf8")]);
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write("tEXt", 4, "latin1");
  data.copy(chunk, 8);
  chunk.writeUInt32BE(zlib.crc32(chunk.subarray(4, 8 + data.length)) >>> 0, 8 + data.length);
  const ihdrEnd = 8 + 12 + 13; // signature + IHDR chunk
  return Buffer.concat([bytes.subarray(0, ihdrEnd), chunk, bytes.subarray(ihdrEnd)]);
}

/**
 * Overwrite `file` in place, as stb's fopen("wb") + fwrite does: truncate, write the first half,
 * wait `gapMs`, write the rest. A reader polling the file can see it empty or half-written.
 * @param {string} file @param {Buffer} bytes @param {number} gapMs
 * @param {(ms: number) => Promise<void>} sleep
 */
export async function writeInPlace(file, bytes, gapMs, sleep) {
  const fd = fs.openSync(file, "w");
  try {
    const half = Math.floor(bytes.length / 2);
    fs.writeSync(fd, bytes, 0, half);
    if (gapMs > 0) await sleep(gapMs);
    fs.writeSync(fd, bytes, half, bytes.length - half);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Width and height of a PNG or JPEG file (what stb_image would load), or null when the file
 * is not an image the double understands.
 * @param {string} file @returns {{ width: number, height: number } | null}
 */
export function imageSize(file) {
  let buf;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return null;
  }
  return imageSizeOf(buf);
}

/** Width and height of PNG or JPEG bytes (what stb_image loads), or null. @param {Buffer} buf */
export function imageSizeOf(buf) {
  if (buf.length >= 24 && buf.readUInt32BE(0) === 0x89504e47 && buf.toString("latin1", 12, 16) === "IHDR") {
    return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
  }
  if (buf.length > 4 && buf[0] === 0xff && buf[1] === 0xd8) {
    let i = 2;
    while (i + 9 < buf.length) {
      if (buf[i] !== 0xff) return null;
      const marker = /** @type {number} */ (buf[i + 1]);
      const len = buf.readUInt16BE(i + 2);
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { height: buf.readUInt16BE(i + 5), width: buf.readUInt16BE(i + 7) };
      }
      i += 2 + len;
    }
  }
  return null;
}
