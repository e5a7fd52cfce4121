import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { resolveReleaseAsset, sdCppRelease } from "../../src/setup/index.js";
import { missingGlibc, systemGlibc } from "../../src/setup/install-sd-cpp.js";
import { startFileServer, type FileServer } from "./helpers/file-server.js";
import { makeZip } from "./helpers/zip.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const tsx = path.join(root, "node_modules/.bin/tsx");
const cli = path.join(root, "tests/setup/helpers/cli.ts");
const linuxX64 = process.platform === "linux" && process.arch === "x64";

const versionLine = "stable-diffusion.cpp version master-827-97d2990, commit 97d29908";
const sdCliScript = `#!/bin/sh\nif [ "$1" = "--version" ]; then echo "${versionLine}"; exit 0; fi\necho "usage: sd-cli [options]"; exit 1\n`;

/** A release zip as `zip -j` packs one: sd-cli (recorded without the x bit, as 7-Zip would), sd-server, libraries. */
function releaseZip(script = sdCliScript): Buffer {
  return makeZip([
    { name: "sd-cli", data: script, mode: 0o644 },
    { name: "sd-server", data: "#!/bin/sh\nexit 0\n" },
    { name: "libstable-diffusion.so", data: "not really a library", mode: 0o644 },
    { name: "stable-diffusion.cpp.txt", data: "MIT License" },
  ]);
}

let dir: string;
let dataDir: string;
let fakeBin: string;
let server: FileServer;

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-setup-"));
  dataDir = path.join(dir, "data");
  fakeBin = path.join(dir, "fake-bin");
  fs.mkdirSync(fakeBin);
  server = await startFileServer();
});
afterEach(async () => {
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function diffugen(args: string[], env: Record<string, string> = {}) {
  return execa(tsx, [cli, ...args], {
    cwd: dir,
    reject: false,
    extendEnv: false,
    env: {
      // Only node (for tsx) and the fakes: no real nvidia-smi / vulkaninfo of the test machine.
      PATH: [fakeBin, path.dirname(process.execPath)].join(path.delimiter),
      HOME: dir,
      DATA_DIR: dataDir,
      MODELS_DIR: path.join(dir, "models"),
      DIFFUGEN_RELEASES_URL: `${server.url}/releases/download`,
      NVIDIA_SMI: path.join(fakeBin, "nvidia-smi"),
      ...env,
    },
  });
}

function serveAsset(file: string, body: Buffer): string {
  const urlPath = `/releases/download/${sdCppRelease.tag}/${file}`;
  server.route(urlPath, { body });
  return urlPath;
}

function fakeTool(name: string, script: string): void {
  const file = path.join(fakeBin, name);
  fs.writeFileSync(file, script);
  fs.chmodSync(file, 0o755);
}

describe.skipIf(process.platform === "win32")("diffugen setup", () => {
  it("downloads the CPU build, extracts it under DATA_DIR/bin, makes sd-cli executable and prints SD_CPP_BIN", async () => {
    const [asset] = resolveReleaseAsset(process.platform, process.arch, "cpu").files;
    const urlPath = serveAsset(asset!, releaseZip());

    const result = await diffugen(["setup", "--variant", "cpu"]);
    expect(result.exitCode, result.stderr).toBe(0);
    const installDir = path.join(dataDir, "bin", `sd-cpp-${sdCppRelease.tag}-${process.platform === "darwin" ? "metal" : "cpu"}`);
    const bin = path.join(installDir, "sd-cli");
    expect(result.stdout.trim()).toBe(`SD_CPP_BIN=${bin}`);
    expect(result.stderr).toContain(`sd-cli runs: ${versionLine}`);
    // The temp folder is outside the checkout: the launcher by its absolute path.
    expect(result.stderr).toContain(`Next: node ${path.join(root, "bin", "diffugen.js")} models pull sd15`);
    expect(server.requestsTo(urlPath)).toHaveLength(1);

    expect(fs.statSync(bin).mode & 0o111).toBe(0o111);
    expect(fs.existsSync(path.join(installDir, "libstable-diffusion.so"))).toBe(true);
    const version = await execa(bin, ["--version"]);
    expect(version.stdout).toBe(versionLine);
    // The archive is gone once installed; no staging folder is left behind.
    expect(fs.readdirSync(path.join(dataDir, "bin")).sort()).toEqual(["downloads", path.basename(installDir)]);
    expect(fs.readdirSync(path.join(dataDir, "bin", "downloads"))).toEqual([]);

    // Run again: the working build is kept, nothing is downloaded.
    const again = await diffugen(["setup", "--variant", "cpu"]);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).toContain("already installed");
    expect(again.stdout.trim()).toBe(`SD_CPP_BIN=${bin}`);
    expect(server.requestsTo(urlPath)).toHaveLength(1);

    // --force replaces it.
    const forced = await diffugen(["setup", "--variant", "cpu", "--force"]);
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(server.requestsTo(urlPath)).toHaveLength(2);
  });

  it.skipIf(!linuxX64)("picks a GPU build when nvidia-smi sees a GPU: Vulkan on Linux, where upstream has no CUDA build", async () => {
    fakeTool("nvidia-smi", "#!/bin/sh\necho 'GPU 0: NVIDIA GeForce RTX 4060 Laptop GPU (UUID: GPU-1234)'\n");
    const urlPath = serveAsset("sd-master-97d2990-bin-Linux-Ubuntu-24.04-x86_64-vulkan.zip", releaseZip());
    const result = await diffugen(["setup"]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain("found GPU 0: NVIDIA GeForce RTX 4060 Laptop GPU");
    expect(result.stderr).toContain("leejet/stable-diffusion.cpp#1291");
    expect(server.requestsTo(urlPath)).toHaveLength(1);
    expect(result.stdout.trim()).toBe(`SD_CPP_BIN=${path.join(dataDir, "bin", `sd-cpp-${sdCppRelease.tag}-vulkan`, "sd-cli")}`);
  });

  it.skipIf(!linuxX64)("uses Vulkan when vulkaninfo finds a real GPU, and the CPU build when it finds only llvmpipe or nothing", async () => {
    fakeTool("vulkaninfo", "#!/bin/sh\necho 'GPU0:'\necho '    deviceType = PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU'\necho '    deviceName = Intel(R) Graphics'\n");
    const vulkan = serveAsset("sd-master-97d2990-bin-Linux-Ubuntu-24.04-x86_64-vulkan.zip", releaseZip());
    const cpu = serveAsset("sd-master-97d2990-bin-Linux-Ubuntu-24.04-x86_64.zip", releaseZip());

    const withGpu = await diffugen(["setup"]);
    expect(withGpu.exitCode, withGpu.stderr).toBe(0);
    expect(withGpu.stderr).toContain("vulkaninfo found Intel(R) Graphics → vulkan");
    expect(server.requestsTo(vulkan)).toHaveLength(1);

    fakeTool("vulkaninfo", "#!/bin/sh\necho '    deviceType = PHYSICAL_DEVICE_TYPE_CPU'\necho '    deviceName = llvmpipe (LLVM 15.0.7, 256 bits)'\n");
    const softwareOnly = await diffugen(["setup"]);
    expect(softwareOnly.exitCode, softwareOnly.stderr).toBe(0);
    expect(softwareOnly.stderr).toContain("→ cpu");
    expect(server.requestsTo(cpu)).toHaveLength(1);

    fs.rmSync(path.join(fakeBin, "vulkaninfo"));
    const nothing = await diffugen(["setup"]);
    expect(nothing.exitCode, nothing.stderr).toBe(0);
    expect(nothing.stderr).toContain("neither nvidia-smi nor vulkaninfo found a GPU → cpu");
  });

  it.skipIf(!linuxX64)("refuses --variant cuda on Linux, saying why and what to do instead", async () => {
    const result = await diffugen(["setup", "--variant", "cuda"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("no Linux CUDA build");
    expect(result.stderr).toContain("Docker image");
    expect(server.requests).toHaveLength(0);
  });

  it("rejects an unknown variant", async () => {
    const result = await diffugen(["setup", "--variant", "rocm"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("--variant must be one of cuda, vulkan, cpu");
  });

  it("fails with the server's status when the release file is not there", async () => {
    const result = await diffugen(["setup", "--variant", "cpu", "--asset", "sd-does-not-exist.zip"]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/sd-does-not-exist\.zip failed: HTTP 404/);
    expect(result.stderr).toContain("DIFFUGEN_RELEASES_URL is");
    expect(result.stdout).toBe("");
  });

  it("reports a build that does not run here, with a hint, and prints no SD_CPP_BIN", async () => {
    serveAsset("broken.zip", releaseZip("#!/bin/sh\necho 'sd-cli: error while loading shared libraries: libvulkan.so.1: cannot open shared object file' >&2\nexit 127\n"));
    const result = await diffugen(["setup", "--variant", "vulkan", "--asset", "broken.zip"]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain("libvulkan.so.1: cannot open shared object file");
    expect(result.stderr).toContain("apt install libvulkan1");
    expect(result.stdout).toBe("");
  });

  it("a build made for a newer C library: names the GLIBC version it needs, this system's, and what to do instead", async () => {
    const [asset] = resolveReleaseAsset(process.platform, process.arch, "cpu").files;
    const loaderError =
      "sd-cli: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found (required by sd-cli)\n" +
      "sd-cli: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found (required by libstable-diffusion.so)";
    serveAsset(asset!, releaseZip(`#!/bin/sh\ncat >&2 <<'EOF'\n${loaderError}\nEOF\nexit 1\n`));
    const result = await diffugen(["setup", "--variant", "cpu"]);
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toBe("");
    const err = result.stderr;
    expect(err).toContain("does not run on this machine");
    expect(err).toContain("version `GLIBC_2.38' not found");
    // The newest missing version, and the one here.
    expect(err).toContain("this sd-cli needs glibc 2.38 (GLIBC_2.38 not found), but this system has ");
    const here = systemGlibc();
    if (here !== undefined) expect(err).toContain(`this system has glibc ${here}`);
    expect(err).toContain("setup --tag <tag> --asset <file>");
    expect(err).toContain("docker compose up -d --build");
    expect(err).toContain(`git clone --depth 1 --branch ${sdCppRelease.tag} --recursive https://github.com/leejet/stable-diffusion.cpp`);
    expect(err).toContain("cmake -S . -B build -DCMAKE_BUILD_TYPE=Release\n");
    expect(err).toContain('cmake --build build --config Release --target sd-cli -j"$(nproc)"');
    expect(err).toContain("SD_CPP_BIN=$PWD/build/bin/sd-cli");
  });

  it("fails clearly when the archive holds no sd-cli", async () => {
    serveAsset("empty.zip", makeZip([{ name: "README.txt", data: "nothing here" }]));
    const result = await diffugen(["setup", "--variant", "cpu", "--asset", "empty.zip"]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/diffugen: no sd-cli in empty\.zip/);
    expect(fs.readdirSync(path.join(dataDir, "bin")).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });
});

describe("missingGlibc", () => {
  it("reads the newest GLIBC_ / GLIBCXX_ version the loader says is missing", () => {
    const output =
      "sd-cli: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found (required by sd-cli)\n" +
      "sd-cli: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found (required by sd-cli)\n" +
      "sd-cli: /lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.32' not found (required by sd-cli)";
    expect(missingGlibc(output)).toEqual({ glibc: "2.38", glibcxx: "3.4.32" });
    expect(missingGlibc("libvulkan.so.1: cannot open shared object file")).toEqual({ glibc: undefined, glibcxx: undefined });
  });
});
