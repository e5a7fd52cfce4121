import { crc32 } from "node:zlib";

/**
 * Whether a buffer is one whole PNG: signature, IHDR first, every chunk's CRC right,
 * at least one IDAT, and IEND at the very end. sd-cli rewrites its preview file in place
 * every step, so a reader can catch it empty or half-written; such a file must never
 * reach a client. Walking the chunks is exact and costs microseconds (no inflate).
 */

const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export interface PngInfo {
  width: number;
  height: number;
}

/** The image size when `buf` is a complete, intact PNG; undefined otherwise. */
export function completePngInfo(buf: Buffer): PngInfo | undefined {
  if (buf.length < signature.length + 12 * 3 || !buf.subarray(0, 8).equals(signature)) return undefined;
  let offset = 8;
  let info: PngInfo | undefined;
  let sawData = false;
  while (offset + 12 <= buf.length) {
    const length = buf.readUInt32BE(offset);
    const end = offset + 12 + length;
    if (length > 0x7fffffff || end > buf.length) return undefined;
    const type = buf.toString("latin1", offset + 4, offset + 8);
    const expected = buf.readUInt32BE(offset + 8 + length);
    if (crc32(buf.subarray(offset + 4, offset + 8 + length)) !== expected) return undefined;
    if (info === undefined) {
      if (type !== "IHDR" || length < 8) return undefined;
      info = { width: buf.readUInt32BE(offset + 8), height: buf.readUInt32BE(offset + 12) };
    }
    if (type === "IDAT") sawData = true;
    if (type === "IEND") return end === buf.length && sawData ? info : undefined;
    offset = end;
  }
  return undefined;
}

/** Only the header: size of a PNG file's first bytes (no integrity check). */
export function pngHeaderInfo(buf: Buffer): PngInfo | undefined {
  if (buf.length < 24 || !buf.subarray(0, 8).equals(signature)) return undefined;
  if (buf.toString("latin1", 12, 16) !== "IHDR") return undefined;
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}
