import crypto from "node:crypto";
import { once } from "node:events";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import {
  ChecksumMismatchError,
  DownloadAbortedError,
  DownloadError,
  DownloadInterruptedError,
  DownloadNetworkError,
  HttpStatusError,
  SizeMismatchError,
} from "./errors.js";

/**
 * One file over plain HTTP(S) with Node's fetch, resumable and verified:
 *
 * - bytes go to `dest + ".part"`; an existing `.part` is resumed with `Range: bytes=N-`
 *   (206 appends; a 200 means the server ignored the range: start over in place; 416 means
 *   the `.part` is already whole or is wrong: verify it, else start over once);
 * - redirects are followed (Hugging Face and GitHub both redirect to a CDN; fetch drops the
 *   Authorization header when the redirect leaves the origin, as the CDN URLs are signed);
 * - `Accept-Encoding: identity`, so byte offsets are offsets in the file, not in a gzip stream;
 * - when complete: the size is checked (Content-Length / Content-Range / expectedBytes), the
 *   sha256 if given (a mismatch deletes the file: ChecksumMismatchError), then the `.part` is
 *   flushed and renamed to `dest` in one step, so `dest` exists only whole and verified;
 * - an AbortSignal stops it and keeps the `.part` (DownloadAbortedError); a broken connection
 *   keeps it too (DownloadInterruptedError): calling again resumes.
 */

export interface DownloadOptions {
  /** Lower-case or upper-case hex; checked over the whole file. */
  sha256?: string | undefined;
  /** The exact size; a different size is an error, and a `.part` of this size is verified without a request. */
  expectedBytes?: number | undefined;
  signal?: AbortSignal | undefined;
  /** At most every `progressIntervalMs` and once at the end. `total` is undefined when the server does not say. */
  onProgress?: ((received: number, total: number | undefined, bytesPerSec: number) => void) | undefined;
  /** Extra request headers (e.g. Authorization). */
  headers?: Record<string, string> | undefined;
  progressIntervalMs?: number | undefined;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  sha256: string;
  /** Bytes that were already in the `.part` and not fetched again. */
  resumedFrom: number;
}

const userAgent = "diffugen-setup (+https://github.com/CLOUDWERX-DEV/diffugen)";

export async function downloadFile(url: string, dest: string, options: DownloadOptions = {}): Promise<DownloadResult> {
  const part = `${dest}.part`;
  const expectedSha = options.sha256?.toLowerCase();
  await fsp.mkdir(path.dirname(dest), { recursive: true });
  let startedOver = false;

  const startOver = async (why: string) => {
    if (startedOver) throw new DownloadError(`${url}: ${why}, even after starting over`, url);
    startedOver = true;
    await fsp.rm(part, { force: true });
  };

  for (;;) {
    const offset = await sizeOf(part);
    if (options.signal?.aborted) throw new DownloadAbortedError(url, part, offset, options.signal.reason);

    // A .part of exactly the expected size needs no request: verify it.
    if (options.expectedBytes !== undefined && offset > 0 && offset >= options.expectedBytes) {
      if (offset === options.expectedBytes) {
        const sha = await sha256Of(part);
        if (!expectedSha || sha === expectedSha) return finish(part, dest, offset, sha, offset);
      }
      await startOver(`the partial file ${part} does not match`);
      continue;
    }

    const response = await request(url, part, offset, options);

    if (response.status === 416 && offset > 0) {
      await discard(response);
      const total = parseContentRange(response.headers.get("content-range"))?.total;
      const checks = { total, expectedBytes: options.expectedBytes, sha256: expectedSha };
      const verified = await verifyWhole(part, offset, checks);
      if (verified) return finish(part, dest, offset, verified, offset);
      await startOver(`the server refused to resume ${part} (HTTP 416) and it could not be verified as complete`);
      continue;
    }
    if (!response.ok) {
      await discard(response);
      throw new HttpStatusError(url, response.status, response.statusText, response.url || url);
    }

    let start = 0;
    let total: number | undefined;
    if (response.status === 206) {
      const range = parseContentRange(response.headers.get("content-range"));
      if (!range || range.start !== offset) {
        await discard(response);
        await startOver(`the server sent a different range than asked (${response.headers.get("content-range")})`);
        continue;
      }
      start = offset;
      total = range.total;
    } else {
      // 200: the whole file, also when a range was asked for (the server ignored it): start over.
      total = contentLength(response);
    }

    if (options.expectedBytes !== undefined && total !== undefined && total !== options.expectedBytes) {
      await discard(response);
      await fsp.rm(part, { force: true });
      throw new SizeMismatchError(url, dest, options.expectedBytes, total);
    }
    total ??= options.expectedBytes;

    const hash = crypto.createHash("sha256");
    if (start > 0) await hashInto(part, hash);
    const received = await writeBody(response, part, start, total, hash, url, options);

    if (total !== undefined && received < total) {
      // A clean end of stream short of the announced size is a broken connection too.
      throw new DownloadInterruptedError(url, part, received, total);
    }
    if (total !== undefined && received > total) {
      await fsp.rm(part, { force: true });
      throw new SizeMismatchError(url, dest, total, received);
    }
    const sha = hash.digest("hex");
    if (expectedSha && sha !== expectedSha) {
      await fsp.rm(part, { force: true });
      throw new ChecksumMismatchError(url, dest, expectedSha, sha);
    }
    return finish(part, dest, received, sha, start);
  }
}

async function request(url: string, part: string, offset: number, options: DownloadOptions): Promise<Response> {
  const headers: Record<string, string> = {
    "User-Agent": userAgent,
    "Accept-Encoding": "identity",
    ...options.headers,
  };
  if (offset > 0) headers.Range = `bytes=${offset}-`;
  try {
    return await fetch(url, { headers, redirect: "follow", signal: options.signal ?? null });
  } catch (err) {
    if (options.signal?.aborted) throw new DownloadAbortedError(url, part, offset, options.signal.reason);
    throw new DownloadNetworkError(url, err);
  }
}

/** Streams the body into the `.part` (appending from `start`), hashing and reporting as it goes. */
async function writeBody(
  response: Response,
  part: string,
  start: number,
  total: number | undefined,
  hash: crypto.Hash,
  url: string,
  options: DownloadOptions,
): Promise<number> {
  let received = start;
  const began = Date.now();
  const interval = options.progressIntervalMs ?? 250;
  let lastReport = 0;
  const report = (force: boolean) => {
    if (!options.onProgress) return;
    const now = Date.now();
    if (!force && now - lastReport < interval) return;
    lastReport = now;
    const seconds = Math.max((now - began) / 1000, 0.001);
    options.onProgress(received, total, (received - start) / seconds);
  };
  report(true);

  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      received += chunk.length;
      report(false);
      callback(null, chunk);
    },
  });
  const out = fs.createWriteStream(part, { flags: start > 0 ? "a" : "w" });
  const body = response.body
    ? Readable.fromWeb(response.body as WebReadableStream<Uint8Array>)
    : Readable.from([]);
  try {
    await pipeline(body, meter, out, { signal: options.signal });
  } catch (err) {
    // Let the file close (and its pending writes land) before anyone looks at the .part.
    if (!out.closed) await once(out, "close").catch(() => undefined);
    const onDisk = await sizeOf(part);
    if (options.signal?.aborted) throw new DownloadAbortedError(url, part, onDisk, options.signal.reason);
    if (isFileSystemError(err)) throw err;
    throw new DownloadInterruptedError(url, part, onDisk, total, err);
  }
  report(true);
  return received;
}

async function finish(part: string, dest: string, bytes: number, sha256: string, resumedFrom: number): Promise<DownloadResult> {
  // Flush to disk before the rename, so a crash cannot leave a renamed but empty file.
  const handle = await fsp.open(part, "r+");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsp.rename(part, dest);
  return { path: dest, bytes, sha256, resumedFrom };
}

/** After a 416: is the `.part` the whole file? Returns its sha256 when something confirmed it. */
async function verifyWhole(
  part: string,
  size: number,
  checks: { total: number | undefined; expectedBytes: number | undefined; sha256: string | undefined },
): Promise<string | undefined> {
  if (checks.total === undefined && checks.expectedBytes === undefined && checks.sha256 === undefined) return undefined;
  if (checks.total !== undefined && size !== checks.total) return undefined;
  if (checks.expectedBytes !== undefined && size !== checks.expectedBytes) return undefined;
  const sha = await sha256Of(part);
  if (checks.sha256 !== undefined && sha !== checks.sha256) return undefined;
  return sha;
}

export async function sha256Of(file: string): Promise<string> {
  const hash = crypto.createHash("sha256");
  await hashInto(file, hash);
  return hash.digest("hex");
}

async function hashInto(file: string, hash: crypto.Hash): Promise<void> {
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await fsp.stat(file)).size;
  } catch {
    return 0;
  }
}

async function discard(response: Response): Promise<void> {
  try {
    await response.body?.cancel();
  } catch {
    // nothing to read anyway
  }
}

function contentLength(response: Response): number | undefined {
  const value = response.headers.get("content-length");
  return value !== null && /^\d+$/.test(value.trim()) ? Number(value) : undefined;
}

// "bytes 100-199/200" → {start: 100, total: 200}; "bytes */200" (a 416) → {start: undefined, total: 200}.
export function parseContentRange(value: string | null): { start: number | undefined; total: number | undefined } | undefined {
  if (!value) return undefined;
  const match = /^bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)$/i.exec(value.trim());
  if (!match) return undefined;
  return {
    start: match[1] !== undefined ? Number(match[1]) : undefined,
    total: match[3] !== undefined && match[3] !== "*" ? Number(match[3]) : undefined,
  };
}

function isFileSystemError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && ["ENOSPC", "EACCES", "EPERM", "EROFS", "EISDIR", "EDQUOT", "EMFILE"].includes(code);
}
