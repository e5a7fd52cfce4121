import { existsSync } from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import extractZip from "extract-zip";
import { downloadFile, type DownloadResult } from "./download.js";
import { DownloadAbortedError, DownloadInterruptedError, DownloadNetworkError, HttpStatusError } from "./errors.js";
import { sdCppRelease, type ReleaseAsset } from "./sd-release.js";

/**
 * Installs a stable-diffusion.cpp release build under `<DATA_DIR>/bin/sd-cpp-<tag>-<variant>/`:
 * downloads its zip(s) (resumable, into `<DATA_DIR>/bin/downloads/`), extracts them into a
 * staging folder that replaces the final one in one rename, makes sd-cli (and sd-server)
 * executable, and runs `sd-cli --version` to prove the binary loads on this machine.
 */

export interface InstallOptions {
  dataDir: string;
  /** Base of the download URLs: `<releasesUrl>/<tag>/<file>`. */
  releasesUrl: string;
  tag: string;
  asset: ReleaseAsset;
  /** Download and extract again even when the folder already holds a working sd-cli. */
  force?: boolean | undefined;
  /** How the user runs diffugen, for hints (default `diffugen`). */
  cli?: string | undefined;
  signal?: AbortSignal | undefined;
  retries?: number | undefined;
  retryDelayMs?: number | undefined;
  onDownloadStart?: ((file: string, url: string, index: number, count: number) => void) | undefined;
  onProgress?: ((file: string, received: number, total: number | undefined, bytesPerSec: number) => void) | undefined;
  onDownloaded?: ((file: string, result: DownloadResult) => void) | undefined;
  onRetry?: ((file: string, error: Error, attempt: number, delayMs: number) => void) | undefined;
}

export interface InstallResult {
  dir: string;
  /** Absolute path of sd-cli: the SD_CPP_BIN to use. */
  bin: string;
  /** First line `sd-cli --version` printed. */
  version: string;
  /** The folder already held a working build; nothing was downloaded. */
  reused: boolean;
}

/** sd-cli was installed but does not run here (missing shared libraries, wrong glibc, no Vulkan loader...). */
export class SdCliCheckError extends Error {
  constructor(
    readonly bin: string,
    readonly output: string,
    hint: string,
  ) {
    super(`${bin} --version failed${output ? `:\n${indent(output)}` : ""}\n${hint}`);
    this.name = "SdCliCheckError";
  }
}

/** The release archive is not what was expected (corrupt zip, no sd-cli inside). */
export class ReleaseContentError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ReleaseContentError";
  }
}

export function installDirFor(dataDir: string, tag: string, variant: string): string {
  return path.join(dataDir, "bin", `sd-cpp-${tag}-${variant}`);
}

export async function installSdCpp(options: InstallOptions): Promise<InstallResult> {
  const dir = installDirFor(options.dataDir, options.tag, options.asset.variant);
  const existing = existsSync(dir) ? await findSdBinary(dir) : undefined;
  if (existing && !options.force) {
    const version = await checkSdCli(existing, options.asset.variant, options).catch(() => undefined);
    if (version !== undefined) return { dir, bin: existing, version, reused: true };
  }

  const downloads = path.join(options.dataDir, "bin", "downloads");
  const archives: string[] = [];
  for (const [i, file] of options.asset.files.entries()) {
    const url = `${options.releasesUrl.replace(/\/+$/, "")}/${encodeURIComponent(options.tag)}/${encodeURIComponent(file)}`;
    const dest = path.join(downloads, file);
    options.onDownloadStart?.(file, url, i + 1, options.asset.files.length);
    // A zip left by an earlier run that stopped after its download is whole (it was renamed from .part).
    if (!existsSync(dest) || options.force) {
      const result = await downloadRetrying(url, dest, file, options);
      options.onDownloaded?.(file, result);
    }
    archives.push(dest);
  }

  const staging = `${dir}.tmp-${process.pid}`;
  await fsp.rm(staging, { recursive: true, force: true });
  await fsp.mkdir(staging, { recursive: true });
  try {
    // extract-zip refuses entries that would land outside the folder (zip-slip) and keeps unix modes.
    for (const archive of archives) {
      try {
        await extractZip(archive, { dir: path.resolve(staging) });
      } catch (err) {
        // A broken archive is fetched again next time.
        await fsp.rm(archive, { force: true });
        throw new ReleaseContentError(`cannot extract ${archive}: ${(err as Error).message}`, { cause: err });
      }
    }
    const stagedBin = await findSdBinary(staging);
    if (!stagedBin) {
      throw new ReleaseContentError(`no sd-cli in ${options.asset.files.join(", ")}: pass --asset with another build of stable-diffusion.cpp`);
    }
    if (process.platform !== "win32") {
      for (const name of [path.basename(stagedBin), "sd-server"]) {
        const file = path.join(path.dirname(stagedBin), name);
        if (existsSync(file)) await fsp.chmod(file, 0o755);
      }
    }
    await fsp.rm(dir, { recursive: true, force: true });
    await fsp.mkdir(path.dirname(dir), { recursive: true });
    await fsp.rename(staging, dir);
  } catch (err) {
    await fsp.rm(staging, { recursive: true, force: true });
    throw err;
  }
  const bin = (await findSdBinary(dir))!;
  const version = await checkSdCli(bin, options.asset.variant, options);
  for (const archive of archives) await fsp.rm(archive, { force: true });
  return { dir, bin, version, reused: false };
}

async function downloadRetrying(url: string, dest: string, file: string, options: InstallOptions): Promise<DownloadResult> {
  const retries = options.retries ?? 2;
  for (let attempt = 0; ; attempt++) {
    try {
      return await downloadFile(url, dest, {
        signal: options.signal,
        onProgress: (received, total, rate) => options.onProgress?.(file, received, total, rate),
      });
    } catch (err) {
      if (err instanceof DownloadAbortedError) throw err;
      const transient =
        err instanceof DownloadInterruptedError ||
        err instanceof DownloadNetworkError ||
        (err instanceof HttpStatusError && (err.status >= 500 || err.status === 429));
      if (!transient || attempt >= retries || options.signal?.aborted) throw err;
      const delay = (options.retryDelayMs ?? 2_000) * 2 ** attempt;
      options.onRetry?.(file, err as Error, attempt + 1, delay);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

const binaryNames = process.platform === "win32" ? ["sd-cli.exe", "sd.exe"] : ["sd-cli", "sd"];

/** The sd-cli executable inside an extracted release (builds before master-411 call it `sd`). */
export async function findSdBinary(root: string, depth = 3): Promise<string | undefined> {
  const queue: { dir: string; level: number }[] = [{ dir: root, level: 0 }];
  const found: string[] = [];
  while (queue.length > 0) {
    const { dir, level } = queue.shift()!;
    let entries: import("node:fs").Dirent[];
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isFile() && binaryNames.includes(entry.name)) found.push(full);
      else if (entry.isDirectory() && level < depth) queue.push({ dir: full, level: level + 1 });
    }
  }
  for (const name of binaryNames) {
    const match = found.find((f) => path.basename(f) === name);
    if (match) return match;
  }
  return undefined;
}

/** What the hints name: the release tag installed, and how the user runs diffugen. */
export interface CheckContext {
  tag?: string | undefined;
  cli?: string | undefined;
  /** This system's glibc version (default: Node's process report); tests pass one. */
  glibc?: string | undefined;
}

/** Runs `sd-cli --version` (argv, no shell); resolves its first line, throws SdCliCheckError with a hint. */
export async function checkSdCli(bin: string, variant: string, context: CheckContext = {}): Promise<string> {
  let output = "";
  try {
    const result = await execa(bin, ["--version"], { timeout: 30_000, reject: false, stdin: "ignore", all: true });
    output = (typeof result.all === "string" ? result.all : "").trim();
    if (result.exitCode === 0) {
      return output.split("\n").map((l) => l.trim()).find((l) => /version/i.test(l)) ?? output.split("\n")[0] ?? "";
    }
    if (!output) output = result.signal ? `killed by ${result.signal}` : `exit code ${String(result.exitCode)}`;
  } catch (err) {
    output = (err as Error).message;
  }
  throw new SdCliCheckError(bin, lastLines(output, 12), hintFor(variant, output, context));
}

/**
 * The newest `GLIBC_x.y` / `GLIBCXX_x.y.z` the loader says is missing, from lines such as
 * "sd-cli: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found (required by sd-cli)".
 */
export function missingGlibc(output: string): { glibc?: string | undefined; glibcxx?: string | undefined } {
  const newest = (name: string) => {
    const found = [...output.matchAll(new RegExp(`version [\`'"]?${name}_([0-9.]+)['"]? not found`, "g"))].map((m) => m[1]!);
    return found.sort(compareVersions).at(-1);
  };
  return { glibc: newest("GLIBC"), glibcxx: newest("GLIBCXX") };
}

function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** glibc's version on this machine ("2.36"), from Node's process report; undefined on musl, macOS, Windows. */
export function systemGlibc(): string | undefined {
  try {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    return header?.glibcVersionRuntime;
  } catch {
    return undefined;
  }
}

/**
 * A release built against a newer C library than this system's: say which version it needs,
 * which one is here, and the three ways out (another build, Docker, building from source,
 * with the exact commands).
 */
function glibcHint(variant: string, output: string, context: CheckContext): string | undefined {
  const { glibc, glibcxx } = missingGlibc(output);
  if (glibc === undefined && glibcxx === undefined) return undefined;
  const here = context.glibc ?? systemGlibc();
  const cli = context.cli ?? "diffugen";
  const tag = context.tag ?? sdCppRelease.tag;
  const needs = [glibc && `glibc ${glibc} (GLIBC_${glibc} not found)`, glibcxx && `libstdc++ with GLIBCXX_${glibcxx}`].filter(Boolean).join(" and ");
  const cmakeFlag = variant === "vulkan" ? " -DSD_VULKAN=ON" : variant === "cuda" ? " -DSD_CUDA=ON" : variant === "metal" ? " -DSD_METAL=ON" : "";
  const packages =
    variant === "vulkan" ? "build-essential cmake git libvulkan-dev glslc" : variant === "cuda" ? "build-essential cmake git nvidia-cuda-toolkit" : "build-essential cmake git";
  return [
    `this sd-cli needs ${needs}, but this system has ${here ? `glibc ${here}` : "an older C library"}: ` +
      "stable-diffusion.cpp's Linux release builds are made on Ubuntu 24.04 and run only where the C library is at least as new. What to do:",
    `  1. another build made for an older system, if the release has one: ${cli} setup --tag <tag> --asset <file> (the other Linux variants of this release are built the same way and fail the same)`,
    "  2. Docker: docker compose up -d --build (its image builds sd-cli itself; see docs/docker.md)",
    `  3. build it here (Debian/Ubuntu: apt install ${packages}):`,
    `       git clone --depth 1 --branch ${tag} --recursive https://github.com/${sdCppRelease.repo}`,
    "       cd stable-diffusion.cpp",
    `       cmake -S . -B build -DCMAKE_BUILD_TYPE=Release${cmakeFlag}`,
    '       cmake --build build --config Release --target sd-cli -j"$(nproc)"',
    "     then set SD_CPP_BIN=$PWD/build/bin/sd-cli (in your environment or .env)",
  ].join("\n");
}

function hintFor(variant: string, output: string, context: CheckContext = {}): string {
  const hints: string[] = [];
  const glibc = glibcHint(variant, output, context);
  if (glibc !== undefined) hints.push(glibc);
  // A C library too old hides every other problem: no more hints then, unless the output names one.
  if (/libvulkan/.test(output) || (variant === "vulkan" && glibc === undefined)) {
    hints.push(`the Vulkan build needs the Vulkan loader (Debian/Ubuntu: apt install libvulkan1) and a GPU driver with Vulkan support; or: ${context.cli ?? "diffugen"} setup --variant cpu`);
  }
  if (/libgomp/.test(output)) hints.push("install the OpenMP runtime (Debian/Ubuntu: apt install libgomp1)");
  if (/cudart|cublas/i.test(output) || (variant === "cuda" && glibc === undefined)) hints.push("the CUDA build needs an NVIDIA driver for CUDA 12 and the CUDA runtime libraries");
  if (hints.length === 0) hints.push("run the command above yourself to see what is missing; or try another --variant");
  return hints.map((h) => `hint: ${h}`).join("\n");
}

function lastLines(text: string, n: number): string {
  const lines = text.split("\n");
  return lines.slice(Math.max(0, lines.length - n)).join("\n");
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");
}
