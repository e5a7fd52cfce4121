import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ChecksumMismatchError,
  DownloadAbortedError,
  DownloadInterruptedError,
  DownloadNetworkError,
  downloadFile,
  HttpStatusError,
  parseContentRange,
  SizeMismatchError,
} from "../../src/setup/index.js";
import { startFileServer, type FileServer } from "./helpers/file-server.js";

const content = crypto.randomBytes(1_500_000);
const sha = crypto.createHash("sha256").update(content).digest("hex");

let dir: string;
let server: FileServer;
let dest: string;

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-download-"));
  dest = path.join(dir, "nested", "model.safetensors");
  server = await startFileServer();
});
afterEach(async () => {
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const sha256File = (file: string) => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");

describe("downloadFile", () => {
  it("downloads a whole file, checks its sha256 and renames the .part into place", async () => {
    server.route("/model.bin", { body: content });
    const seen: [number, number | undefined][] = [];
    const result = await downloadFile(`${server.url}/model.bin`, dest, {
      sha256: sha.toUpperCase(),
      expectedBytes: content.length,
      onProgress: (received, total) => seen.push([received, total]),
    });
    expect(result).toEqual({ path: dest, bytes: content.length, sha256: sha, resumedFrom: 0 });
    expect(sha256File(dest)).toBe(sha);
    expect(fs.existsSync(`${dest}.part`)).toBe(false);
    expect(seen.at(-1)).toEqual([content.length, content.length]);
    const [request] = server.requestsTo("/model.bin");
    expect(request?.headers.range).toBeUndefined();
    expect(request?.headers["accept-encoding"]).toBe("identity");
  });

  it("resumes after a dropped connection with Range: bytes=N- and ends with the right file", async () => {
    server.route("/model.bin", { body: content, behave: (attempt) => (attempt === 1 ? "drop-half" : "normal") });
    const url = `${server.url}/model.bin`;

    const first = await downloadFile(url, dest, { sha256: sha }).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(DownloadInterruptedError);
    expect((first as DownloadInterruptedError).partPath).toBe(`${dest}.part`);
    expect(fs.existsSync(dest)).toBe(false);
    const kept = fs.statSync(`${dest}.part`).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(content.length);
    expect(fs.readFileSync(`${dest}.part`).equals(content.subarray(0, kept))).toBe(true);

    const second = await downloadFile(url, dest, { sha256: sha });
    const requests = server.requestsTo("/model.bin");
    expect(requests).toHaveLength(2);
    expect(requests[1]?.headers.range).toBe(`bytes=${kept}-`);
    expect(second).toMatchObject({ bytes: content.length, sha256: sha, resumedFrom: kept });
    expect(sha256File(dest)).toBe(sha);
    expect(fs.existsSync(`${dest}.part`)).toBe(false);
  });

  it("deletes a file whose sha256 does not match and throws ChecksumMismatchError", async () => {
    server.route("/model.bin", { body: content });
    const wrong = "0".repeat(64);
    const err = await downloadFile(`${server.url}/model.bin`, dest, { sha256: wrong }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChecksumMismatchError);
    expect(err).toMatchObject({ expected: wrong, actual: sha });
    expect(fs.existsSync(dest)).toBe(false);
    expect(fs.existsSync(`${dest}.part`)).toBe(false);
  });

  it("fails on 404 and 500 with a typed error naming the URL and the status", async () => {
    const missing = await downloadFile(`${server.url}/nope.bin`, dest).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(HttpStatusError);
    expect(missing).toMatchObject({ status: 404 });
    expect((missing as Error).message).toContain(`${server.url}/nope.bin`);
    expect((missing as Error).message).toContain("404");

    server.route("/broken.bin", { body: content, behave: () => ({ status: 500 }) });
    const broken = await downloadFile(`${server.url}/broken.bin`, dest).catch((e: unknown) => e);
    expect(broken).toBeInstanceOf(HttpStatusError);
    expect(broken).toMatchObject({ status: 500 });
    expect((broken as Error).message).toMatch(/HTTP 500/);
    expect(fs.existsSync(dest)).toBe(false);
  });

  it("starts over cleanly when the server answers a range request with 200", async () => {
    server.route("/model.bin", { body: content, behave: () => "ignore-range" });
    // A stale .part whose bytes are not the file's: must not survive.
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.writeFileSync(`${dest}.part`, Buffer.alloc(400_000, 7));
    const result = await downloadFile(`${server.url}/model.bin`, dest, { sha256: sha });
    expect(server.requestsTo("/model.bin")[0]?.headers.range).toBe("bytes=400000-");
    expect(result).toMatchObject({ bytes: content.length, resumedFrom: 0 });
    expect(sha256File(dest)).toBe(sha);
  });

  it("stops on abort and keeps the .part, which a later call resumes", async () => {
    server.route("/model.bin", { body: content, behave: (attempt) => (attempt === 1 ? "slow" : "normal") });
    const controller = new AbortController();
    const err = await downloadFile(`${server.url}/model.bin`, dest, {
      progressIntervalMs: 0,
      signal: controller.signal,
      onProgress: (received) => {
        if (received >= 100_000) controller.abort(new Error("user pressed ctrl-c"));
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadAbortedError);
    expect(fs.existsSync(dest)).toBe(false);
    const kept = fs.statSync(`${dest}.part`).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(content.length);

    const result = await downloadFile(`${server.url}/model.bin`, dest, { sha256: sha });
    expect(server.requestsTo("/model.bin")[1]?.headers.range).toBe(`bytes=${kept}-`);
    expect(result.resumedFrom).toBe(kept);
    expect(sha256File(dest)).toBe(sha);
  });

  it("takes a complete .part as done on 416 once it verifies", async () => {
    server.route("/model.bin", { body: content });
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.writeFileSync(`${dest}.part`, content);
    const result = await downloadFile(`${server.url}/model.bin`, dest, { sha256: sha });
    expect(server.requestsTo("/model.bin").map((r) => r.headers.range)).toEqual([`bytes=${content.length}-`]);
    expect(result).toMatchObject({ bytes: content.length, sha256: sha, resumedFrom: content.length });
    expect(sha256File(dest)).toBe(sha);
  });

  it("starts over when a 416 comes back for a .part that is not the file", async () => {
    server.route("/model.bin", { body: content });
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.writeFileSync(`${dest}.part`, Buffer.alloc(content.length + 10, 1));
    const result = await downloadFile(`${server.url}/model.bin`, dest);
    expect(server.requestsTo("/model.bin").map((r) => r.headers.range)).toEqual([`bytes=${content.length + 10}-`, undefined]);
    expect(result.resumedFrom).toBe(0);
    expect(sha256File(dest)).toBe(sha);
  });

  it("verifies a .part of the expected size without asking the server", async () => {
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.writeFileSync(`${dest}.part`, content);
    const result = await downloadFile(`${server.url}/model.bin`, dest, { sha256: sha, expectedBytes: content.length });
    expect(server.requests).toHaveLength(0);
    expect(result.sha256).toBe(sha);
    expect(fs.existsSync(dest)).toBe(true);
  });

  it("follows redirects, as Hugging Face and GitHub send downloads to a CDN", async () => {
    server.route("/resolve/main/model.bin", { behave: () => ({ redirect: "/cdn/abc123" }) });
    server.route("/cdn/abc123", { body: content });
    const result = await downloadFile(`${server.url}/resolve/main/model.bin`, dest, { sha256: sha });
    expect(result.bytes).toBe(content.length);
    expect(server.requests.map((r) => r.path)).toEqual(["/resolve/main/model.bin", "/cdn/abc123"]);
  });

  it("refuses a file of another size than expected, deleting it", async () => {
    server.route("/model.bin", { body: content });
    const err = await downloadFile(`${server.url}/model.bin`, dest, { expectedBytes: 1234 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SizeMismatchError);
    expect(fs.existsSync(dest)).toBe(false);
    expect(fs.existsSync(`${dest}.part`)).toBe(false);
  });

  it("names the network failure when nothing answers", async () => {
    const url = server.url;
    await server.close();
    const err = await downloadFile(`${url}/model.bin`, dest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DownloadNetworkError);
    expect((err as Error).message).toMatch(/ECONNREFUSED/);
    server = await startFileServer(); // for afterEach
  });

  it("sends the caller's headers", async () => {
    server.route("/model.bin", { body: content, bearer: "hf_secret" });
    await downloadFile(`${server.url}/model.bin`, dest, { headers: { Authorization: "Bearer hf_secret" } });
    expect(server.requestsTo("/model.bin")[0]?.headers.authorization).toBe("Bearer hf_secret");
  });
});

describe("parseContentRange", () => {
  it("reads ranges and 416 totals", () => {
    expect(parseContentRange("bytes 100-199/200")).toEqual({ start: 100, total: 200 });
    expect(parseContentRange("bytes */200")).toEqual({ start: undefined, total: 200 });
    expect(parseContentRange("bytes 0-9/*")).toEqual({ start: 0, total: undefined });
    expect(parseContentRange("nonsense")).toBeUndefined();
    expect(parseContentRange(null)).toBeUndefined();
  });
});
