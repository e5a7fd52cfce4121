import { randomUUID } from "node:crypto";
import { rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { invalidRequest } from "./errors.js";

/**
 * Uploaded images (image edits) → a temporary file sd-cli can read as `--init-img`. Only
 * real PNG and JPEG files get through: the type is read from the bytes, never from the
 * name or the client's Content-Type, and the sides are read from the header.
 */

export type ImageFormat = "png" | "jpeg";

export interface ImageInfo {
  format: ImageFormat;
  width: number;
  height: number;
}

/** Largest side accepted for an upload (sd-cli resizes it to the requested size anyway). */
export const maxUploadSide = 8192;

const pngSignature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Format and size from the file's own header, or undefined when it is neither PNG nor JPEG. */
export function sniffImage(buf: Buffer): ImageInfo | undefined {
  if (buf.length >= 33 && buf.subarray(0, 8).equals(pngSignature) && buf.toString("latin1", 12, 16) === "IHDR") {
    // A PNG ends with an IEND chunk: a truncated upload is refused here, not by sd-cli.
    if (buf.length < 45 || buf.toString("latin1", buf.length - 8, buf.length - 4) !== "IEND") return undefined;
    return { format: "png", width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
  }
  if (buf.length >= 4 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff) return jpegInfo(buf);
  return undefined;
}

function jpegInfo(buf: Buffer): ImageInfo | undefined {
  let i = 2;
  while (i + 9 < buf.length) {
    if (buf[i] !== 0xff) return undefined;
    const marker = buf[i + 1]!;
    if (marker === 0xff) {
      i += 1; // fill byte
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return undefined; // end / scan before any frame header
    const length = buf.readUInt16BE(i + 2);
    const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isFrame) return { format: "jpeg", height: buf.readUInt16BE(i + 5), width: buf.readUInt16BE(i + 7) };
    if (length < 2) return undefined;
    i += 2 + length;
  }
  return undefined;
}

/** A file part of a multipart body. */
export type UploadedFile = Exclude<ReturnType<FormData["get"]>, string | null>;

export interface SavedUpload extends ImageInfo {
  path: string;
  /** Deletes the temporary file (idempotent). */
  remove(): Promise<void>;
}

/** Checks an uploaded file and writes it to a private temporary file. */
export async function saveImageUpload(file: UploadedFile, options: { param: string; maxBytes: number }): Promise<SavedUpload> {
  const { param, maxBytes } = options;
  if (file.size === 0) throw invalidRequest(`'${param}' is an empty file`, param);
  if (file.size > maxBytes) throw invalidRequest(`'${param}' is larger than ${Math.floor(maxBytes / 1048576)} MB`, param);
  const buf = Buffer.from(await file.arrayBuffer());
  const info = sniffImage(buf);
  if (!info) throw invalidRequest(`'${param}' must be a PNG or JPEG image`, param, "invalid_image_format");
  if (info.width < 1 || info.height < 1 || info.width > maxUploadSide || info.height > maxUploadSide) {
    throw invalidRequest(`'${param}' is ${info.width}x${info.height}: each side must be between 1 and ${maxUploadSide} pixels`, param, "invalid_image");
  }
  const file_ = path.join(os.tmpdir(), `diffugen-upload-${randomUUID()}.${info.format === "png" ? "png" : "jpg"}`);
  await writeFile(file_, buf, { mode: 0o600 });
  let removed: Promise<void> | undefined;
  return {
    ...info,
    path: file_,
    remove: () => (removed ??= rm(file_, { force: true })),
  };
}

/**
 * A generation size for an init image: its own aspect, sides on sd's 64-pixel grid, within
 * the model's limits (OpenAI's edits default to the input's size).
 */
export function fitToGrid(width: number, height: number, limits: { minSize: number; maxSize: number }): { width: number; height: number } {
  const scale = Math.min(1, limits.maxSize / Math.max(width, height));
  const side = (v: number) => Math.min(limits.maxSize, Math.max(limits.minSize, Math.round((v * scale) / 64) * 64));
  return { width: side(width), height: side(height) };
}
