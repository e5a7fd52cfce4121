import path from "node:path";
import { parseArgsStringToArgv } from "string-argv";
import { envSchema, type Env } from "./env-schema.js";

/** LLM_RESTORE: which models come back after a burst of images. */
export type LlmRestorePolicy = Env["LLM_RESTORE"];
export type SdBackendSetting = Env["SD_BACKEND"];

/** Typed, validated settings: what the rest of the code reads instead of process.env. */
export interface Config {
  server: { port: number; host: string };
  dataDir: string;
  logLevel: Env["LOG_LEVEL"];
  /** LOG_FORMAT: where `diffugen generate` writes its JSON log (`text`: a file; `json`: stderr). */
  logFormat: Env["LOG_FORMAT"];
  /** Old outputs and their job records are pruned past these (0 = no limit). */
  retention: { maxAgeMs: number; maxCount: number };
  sd: {
    bin: string;
    /** SD_SERVER_BIN, or `sd-server` beside SD_CPP_BIN (on PATH when SD_CPP_BIN is a bare name). */
    serverBin: string;
    /** SD_BACKEND: which program draws (see src/diffusion/sd-backends.ts). */
    backend: SdBackendSetting;
    modelsDir: string;
    outputDir: string;
    modelsConfig: string | undefined;
    threads: number | undefined;
    /** SD_EXTRA_ARGS split into argv words (quotes honoured); never run through a shell. */
    extraArgs: string[];
    loraDir: string;
    timeoutMs: number;
    defaultModel: string;
  };
  llm: {
    baseUrl: string;
    model: string;
    /** Ollama keep_alive as it will be sent: a number of seconds, or a duration string. */
    keepAlive: number | string;
    numCtx: number | undefined;
    /**
     * What is loaded back after a burst of images (LLM_RESTORE): the models Ollama held
     * before it, LLM_MODEL alone, or nothing. loadConfig always sets it; absent means
     * `previous` (the variable's default), so LLM settings written out by hand (tests,
     * tools) behave as the service does.
     */
    restore?: LlmRestorePolicy | undefined;
    refineTimeoutMs: number;
    unloadTimeoutMs: number;
    nvidiaSmi: string | undefined;
  };
  gpu: {
    maxQueue: number;
    maxBatch: number;
    /** VRAM_POLICY; undefined: fit when a memory tool is found, else swap. */
    vramPolicy: "swap" | "fit" | undefined;
    vramMarginMiB: number;
    /** ROCM_SMI: AMD's memory tool (default: rocm-smi on PATH). */
    rocmSmi: string | undefined;
  };
}

export class ConfigError extends Error {
  constructor(readonly problems: { variable: string; message: string }[]) {
    super(
      "Invalid configuration:\n" +
        problems.map((p) => `  ${p.variable}: ${p.message}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

/** `sd-server` where sd.cpp's build puts it: beside sd-cli, or on PATH like a bare SD_CPP_BIN. */
function defaultServerBin(sdCliBin: string): string {
  const dir = path.dirname(sdCliBin);
  return sdCliBin.includes("/") || sdCliBin.includes(path.sep) ? path.join(dir, "sd-server") : "sd-server";
}

function parseKeepAlive(value: string): number | string {
  return /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
}

/** Reads and validates the environment; throws ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => ({
        variable: String(issue.path[0] ?? "(environment)"),
        message: issue.message,
      })),
    );
  }
  return fromEnv(parsed.data);
}

function fromEnv(e: Env): Config {
  return {
    server: { port: e.PORT, host: e.HOST },
    dataDir: path.resolve(e.DATA_DIR),
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
    retention: { maxAgeMs: e.OUTPUT_MAX_AGE_DAYS * 86_400_000, maxCount: e.OUTPUT_MAX_COUNT },
    sd: {
      bin: e.SD_CPP_BIN,
      serverBin: e.SD_SERVER_BIN ?? defaultServerBin(e.SD_CPP_BIN),
      backend: e.SD_BACKEND,
      modelsDir: path.resolve(e.MODELS_DIR),
      outputDir: path.resolve(e.OUTPUT_DIR),
      modelsConfig: e.MODELS_CONFIG ? path.resolve(e.MODELS_CONFIG) : undefined,
      threads: e.SD_THREADS,
      extraArgs: parseArgsStringToArgv(e.SD_EXTRA_ARGS),
      // LoRA files live beside the models unless said otherwise.
      loraDir: path.resolve(e.SD_LORA_DIR ?? path.join(e.MODELS_DIR, "loras")),
      timeoutMs: e.GENERATION_TIMEOUT_S * 1000,
      defaultModel: e.DEFAULT_IMAGE_MODEL,
    },
    llm: {
      baseUrl: e.OLLAMA_BASE_URL,
      model: e.LLM_MODEL,
      keepAlive: parseKeepAlive(e.LLM_KEEP_ALIVE),
      numCtx: e.LLM_NUM_CTX,
      restore: e.LLM_RESTORE,
      refineTimeoutMs: e.REFINE_TIMEOUT_S * 1000,
      unloadTimeoutMs: e.UNLOAD_TIMEOUT_S * 1000,
      nvidiaSmi: e.NVIDIA_SMI,
    },
    gpu: { maxQueue: e.MAX_QUEUE, maxBatch: e.MAX_BATCH, vramPolicy: e.VRAM_POLICY, vramMarginMiB: e.VRAM_MARGIN_MB, rocmSmi: e.ROCM_SMI },
  };
}
