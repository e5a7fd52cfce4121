import type { Command } from "commander";
import type { Config } from "../config/index.js";
import { ModelRegistry } from "../models/index.js";
import {
  createDownloadDisplay,
  defaultReleasesUrl,
  detectVariant,
  DownloadAbortedError,
  DownloadError,
  formatBytes,
  installSdCpp,
  NoReleaseAssetError,
  ReleaseContentError,
  resolveReleaseAsset,
  SdCliCheckError,
  sdCppRelease,
  sdVariants,
  type ReleaseAsset,
  type SdVariant,
} from "../setup/index.js";
import { cliCommand } from "./cli-command.js";
import { interruptSignal } from "./interrupt.js";

/**
 * `diffugen setup`: fetches a stable-diffusion.cpp release build for this machine (CUDA when
 * nvidia-smi sees a GPU, else Vulkan when vulkaninfo does, else CPU; `--variant` decides
 * instead), extracts it under DATA_DIR/bin, makes sd-cli executable, checks that it runs, and
 * prints the `SD_CPP_BIN=...` line to use (on stdout; everything else goes to stderr).
 *
 * Reads DATA_DIR and NVIDIA_SMI through Config, and DIFFUGEN_RELEASES_URL (default
 * https://github.com/leejet/stable-diffusion.cpp/releases/download) from the environment:
 * files are fetched from `<DIFFUGEN_RELEASES_URL>/<tag>/<asset>`.
 */

interface SetupOptions {
  variant?: string;
  tag?: string;
  asset?: string[];
  force?: boolean;
}

export function registerSetupCommand(program: Command, loadConfig: () => Config): void {
  program
    .command("setup")
    .description("download a stable-diffusion.cpp build (sd-cli) for this machine into DATA_DIR/bin and print SD_CPP_BIN")
    .option("--variant <name>", `build to install: ${sdVariants.join(", ")} (default: detected with nvidia-smi / vulkaninfo)`)
    .option("--tag <tag>", "stable-diffusion.cpp release tag", sdCppRelease.tag)
    .option("--asset <file...>", "release file name(s) to install instead of the one chosen for this platform")
    .option("--force", "download and extract again even when that build is already installed")
    .action(async (options: SetupOptions) => {
      process.exitCode = await setup(options, loadConfig());
    });
}

async function setup(options: SetupOptions, config: Config): Promise<number> {
  const say = (line: string) => process.stderr.write(`${line}\n`);
  if (options.variant !== undefined && !(sdVariants as readonly string[]).includes(options.variant)) {
    return usageError(`--variant must be one of ${sdVariants.join(", ")}, got '${options.variant}'`);
  }
  const tag = options.tag ?? sdCppRelease.tag;
  const releasesUrl = process.env.DIFFUGEN_RELEASES_URL?.trim() || defaultReleasesUrl;

  let variant = options.variant as SdVariant | undefined;
  if (!variant) {
    const detected = await detectVariant({ nvidiaSmi: config.llm.nvidiaSmi });
    variant = detected.variant;
    say(`GPU check: ${detected.reason} → ${variant}`);
  }

  let asset: ReleaseAsset;
  try {
    asset =
      options.asset && options.asset.length > 0
        ? { files: options.asset, variant }
        : resolveReleaseAsset(process.platform, process.arch, variant, { tag, explicit: options.variant !== undefined, cli: cliCommand() });
  } catch (err) {
    if (err instanceof NoReleaseAssetError) return usageError(err.message);
    throw err;
  }
  if (asset.note) say(`note: ${asset.note}`);
  say(`stable-diffusion.cpp ${tag} (${asset.variant}): ${asset.files.join(" + ")}`);

  const display = createDownloadDisplay();
  const interrupt = interruptSignal();
  try {
    const result = await installSdCpp({
      dataDir: config.dataDir,
      releasesUrl,
      tag,
      asset,
      force: options.force,
      cli: cliCommand(),
      signal: interrupt.signal,
      onDownloadStart: (file, url) => {
        display.log(`fetching ${url}`);
        display.start(file);
      },
      onProgress: (_file, received, total, rate) => display.update(received, total, rate),
      onDownloaded: (file, download) => display.finish(`downloaded ${file} (${formatBytes(download.bytes)})`),
      onRetry: (file, error, attempt, delayMs) => display.log(`${file}: ${error.message}; retry ${attempt} in ${Math.round(delayMs / 1000)} s`),
    });
    display.stop();
    say(result.reused ? `already installed in ${result.dir}` : `installed in ${result.dir}`);
    say(`sd-cli runs: ${result.version}`);
    say("Use it by putting this line in your environment (or .env):");
    process.stdout.write(`SD_CPP_BIN=${result.bin}\n`);
    nextStep(config, say);
    return 0;
  } catch (err) {
    display.stop();
    if (err instanceof DownloadAbortedError) {
      process.stderr.write(
        err.received > 0
          ? `diffugen: interrupted; ${err.partPath} (${formatBytes(err.received)}) is kept: run the same command to resume\n`
          : "diffugen: interrupted\n",
      );
      return 130;
    }
    if (err instanceof SdCliCheckError) {
      process.stderr.write(`diffugen: the build was installed but does not run on this machine: ${err.message}\n`);
      return 1;
    }
    if (err instanceof ReleaseContentError) {
      process.stderr.write(`diffugen: ${err.message}\n`);
      return 1;
    }
    if (err instanceof DownloadError) {
      process.stderr.write(`diffugen: ${err.message}\n`);
      if (releasesUrl !== defaultReleasesUrl) process.stderr.write(`(DIFFUGEN_RELEASES_URL is ${releasesUrl})\n`);
      return 1;
    }
    throw err;
  } finally {
    interrupt.dispose();
  }
}

/** Points at `models pull` when the default model is not on disk yet. */
function nextStep(config: Config, say: (line: string) => void): void {
  try {
    const registry = new ModelRegistry({
      modelsDir: config.sd.modelsDir,
      defaultModel: config.sd.defaultModel,
      modelsConfig: config.sd.modelsConfig,
    });
    const entry = registry.resolve();
    if (registry.missingFiles(entry).length > 0) say(`Next: ${cliCommand()} models pull ${entry.name}`);
  } catch {
    // a MODELS_CONFIG problem is reported by the commands that need the registry
  }
}

function usageError(message: string): number {
  process.stderr.write(`diffugen: ${message}\n`);
  return 2;
}
