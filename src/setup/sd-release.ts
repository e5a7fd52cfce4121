import { execa } from "execa";

/**
 * Which stable-diffusion.cpp release build fits this machine.
 *
 * Releases are tagged `master-<commit count>-<short sha>` and their assets are named by
 * leejet/stable-diffusion.cpp's .github/workflows/build.yml: `sd-<branch>-<short sha>-bin-...`
 * (the commit count is not in the file name). For the pinned tag:
 *
 *   Linux x86_64   sd-master-97d2990-bin-Linux-Ubuntu-24.04-x86_64.zip          (CPU)
 *                  sd-master-97d2990-bin-Linux-Ubuntu-24.04-x86_64-vulkan.zip   (Vulkan)
 *   Windows x64    sd-master-97d2990-bin-win-cuda12-x64.zip + cudart-sd-bin-win-cu12-x64.zip
 *                  sd-master-97d2990-bin-win-vulkan-x64.zip, sd-master-97d2990-bin-win-cpu-x64.zip
 *   macOS arm64    sd-master-97d2990-bin-Darwin-macOS-26.5.2-arm64.zip          (Metal)
 *
 * There is no Linux CUDA build upstream (leejet/stable-diffusion.cpp#1291): on Linux an NVIDIA
 * GPU gets the Vulkan build (NVIDIA's driver ships a Vulkan ICD), and the Docker image of this
 * repository builds sd-cli with CUDA from source.
 *
 * master-827-97d2990 is the build the sd-cli fixtures and the fake sd-cli copy (REFERENCE.md §1).
 */

export const sdCppRelease = {
  repo: "leejet/stable-diffusion.cpp",
  tag: "master-827-97d2990",
} as const;

export const defaultReleasesUrl = `https://github.com/${sdCppRelease.repo}/releases/download`;

export const sdVariants = ["cuda", "vulkan", "cpu"] as const;
export type SdVariant = (typeof sdVariants)[number];

export interface ReleaseAsset {
  /** File names under `<releases url>/<tag>/`, extracted into the same folder (CUDA on Windows needs two). */
  files: string[];
  /** The variant actually installed (may differ from the one asked for, see `note`). */
  variant: SdVariant | "metal";
  /** Why the installed variant differs from the asked one, or what it needs. */
  note?: string | undefined;
}

export class NoReleaseAssetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NoReleaseAssetError";
  }
}

/** `master-827-97d2990` → `master-97d2990`, the prefix of its asset names. */
export function assetStem(tag: string): string {
  const match = /^(.+)-\d+-([0-9a-f]{7,40})$/.exec(tag);
  if (!match) throw new NoReleaseAssetError(`cannot derive asset names from tag '${tag}' (expected <branch>-<count>-<sha>): pass --asset`);
  return `${match[1]}-${match[2]}`;
}

const linuxCudaNote =
  "stable-diffusion.cpp publishes no Linux CUDA build (leejet/stable-diffusion.cpp#1291); " +
  "the Vulkan build runs on NVIDIA GPUs through the driver's Vulkan support. " +
  "For CUDA, use this repository's Docker image (it builds sd-cli with -DSD_CUDA=ON) or build stable-diffusion.cpp yourself";

/**
 * The asset(s) for a platform, CPU architecture and wanted variant. `explicit` means the user
 * asked for that variant (--variant): a CUDA request on Linux is then an error rather than a
 * quiet switch to Vulkan.
 */
export function resolveReleaseAsset(
  platform: NodeJS.Platform,
  arch: string,
  variant: SdVariant,
  options: { tag?: string; explicit?: boolean; /** How the user runs diffugen, for hints (default `diffugen`). */ cli?: string } = {},
): ReleaseAsset {
  const stem = `sd-${assetStem(options.tag ?? sdCppRelease.tag)}-bin`;
  if (platform === "linux" && arch === "x64") {
    if (variant === "cuda") {
      if (options.explicit) throw new NoReleaseAssetError(`${linuxCudaNote}. Or run: ${options.cli ?? "diffugen"} setup --variant vulkan`);
      return { files: [`${stem}-Linux-Ubuntu-24.04-x86_64-vulkan.zip`], variant: "vulkan", note: linuxCudaNote };
    }
    return { files: [`${stem}-Linux-Ubuntu-24.04-x86_64${variant === "vulkan" ? "-vulkan" : ""}.zip`], variant };
  }
  if (platform === "win32" && arch === "x64") {
    if (variant === "cuda") {
      return {
        files: [`${stem}-win-cuda12-x64.zip`, "cudart-sd-bin-win-cu12-x64.zip"],
        variant,
        note: "the CUDA 12 runtime DLLs come from the release's cudart archive",
      };
    }
    return { files: [`${stem}-win-${variant}-x64.zip`], variant };
  }
  if (platform === "darwin" && arch === "arm64") {
    if (options.tag && options.tag !== sdCppRelease.tag) {
      throw new NoReleaseAssetError("macOS asset names carry the build machine's macOS version: with --tag, also pass --asset");
    }
    return {
      files: [`${stem}-Darwin-macOS-26.5.2-arm64.zip`],
      variant: "metal",
      note: variant === "cpu" ? undefined : "the macOS build uses Metal on Apple GPUs",
    };
  }
  throw new NoReleaseAssetError(
    `stable-diffusion.cpp publishes no build for ${platform}-${arch}: build it (https://github.com/${sdCppRelease.repo}/blob/master/docs/build.md) and set SD_CPP_BIN to its sd-cli`,
  );
}

export interface VariantDetection {
  variant: SdVariant;
  reason: string;
}

/** Runs a probe; resolves its exit code and output, never rejects (a missing tool is exit code undefined). */
export type ProbeRunner = (bin: string, args: string[]) => Promise<{ exitCode: number | undefined; stdout: string }>;

const runProbe: ProbeRunner = async (bin, args) => {
  try {
    const result = await execa(bin, args, { timeout: 15_000, reject: false, stdin: "ignore", stripFinalNewline: true });
    return { exitCode: result.exitCode, stdout: typeof result.stdout === "string" ? result.stdout : "" };
  } catch {
    return { exitCode: undefined, stdout: "" };
  }
};

/**
 * CUDA when `nvidia-smi -L` lists a GPU, else Vulkan when `vulkaninfo --summary` finds a real
 * GPU (not only llvmpipe, Mesa's CPU rasterizer, which is slower than the CPU build), else CPU.
 * Both tools are run with an argv array, never through a shell.
 */
export async function detectVariant(
  options: { nvidiaSmi?: string | undefined; vulkaninfo?: string | undefined; run?: ProbeRunner } = {},
): Promise<VariantDetection> {
  const run = options.run ?? runProbe;
  const nvidiaSmi = options.nvidiaSmi ?? "nvidia-smi";
  const smi = await run(nvidiaSmi, ["-L"]);
  if (smi.exitCode === 0 && /GPU \d+:/.test(smi.stdout)) {
    const first = smi.stdout.split("\n").find((l) => /GPU \d+:/.test(l))?.trim();
    return { variant: "cuda", reason: `${nvidiaSmi} found ${first ?? "an NVIDIA GPU"}` };
  }
  const vk = await run(options.vulkaninfo ?? "vulkaninfo", ["--summary"]);
  if (vk.exitCode === 0) {
    const types = [...vk.stdout.matchAll(/PHYSICAL_DEVICE_TYPE_(\w+)/g)].map((m) => m[1]);
    const gpu = types.find((t) => t !== "CPU" && t !== "OTHER");
    if (gpu || types.length === 0) {
      const name = /deviceName\s*=\s*(.+)/.exec(vk.stdout)?.[1]?.trim();
      return { variant: "vulkan", reason: `vulkaninfo found ${name ?? "a Vulkan device"}` };
    }
    return { variant: "cpu", reason: "vulkaninfo lists only a software (CPU) Vulkan device" };
  }
  return { variant: "cpu", reason: "neither nvidia-smi nor vulkaninfo found a GPU" };
}
