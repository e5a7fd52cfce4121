import { z } from "zod";

/**
 * Every environment variable DiffuGen reads, with its default. These names are the
 * product's public interface (README lists them): rename nothing, add aliases instead.
 */

const positiveInt = z.coerce.number().int().positive();
const nonNegativeNumber = z.coerce.number().nonnegative();

/** Empty strings count as unset, so `FOO=` in a .env file falls back to the default. */
function optional<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (v === "" ? undefined : v), schema.optional());
}

export const envSchema = z.object({
  // HTTP server
  PORT: optional(z.coerce.number().int().min(0).max(65535)).default(5199),
  HOST: optional(z.string()).default("127.0.0.1"),

  // Where DiffuGen keeps its own state (the GPU owner lock, the job store).
  DATA_DIR: optional(z.string()).default("./data"),
  // Structured logs (one JSON line per event): pino's levels.
  LOG_LEVEL: optional(z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])).default("info"),
  // `diffugen generate` only: `text` (default) keeps the terminal for progress and results and
  // writes the JSON log to DATA_DIR/logs/diffugen.log; `json` writes it to stderr. serve: always stderr.
  LOG_FORMAT: optional(z.enum(["text", "json"])).default("text"),

  // stable-diffusion.cpp
  SD_CPP_BIN: optional(z.string()).default("sd-cli"),
  // sd.cpp's own server, kept alive for a burst of images (the model is read once). Default:
  // `sd-server` beside SD_CPP_BIN, else on PATH.
  SD_SERVER_BIN: optional(z.string()),
  // auto: sd-server when it is found and the job can use it (no previews asked), else sd-cli.
  SD_BACKEND: optional(
    z.enum(["auto", "cli", "server"], {
      error: (issue) => `expected auto, cli (a fresh sd-cli per image) or server (sd-server kept for a burst), got '${String(issue.input)}'`,
    }),
  ).default("auto"),
  MODELS_DIR: optional(z.string()).default("./models"),
  OUTPUT_DIR: optional(z.string()).default("./outputs"),
  MODELS_CONFIG: optional(z.string()),
  SD_THREADS: optional(positiveInt),
  SD_EXTRA_ARGS: optional(z.string()).default(""),
  SD_LORA_DIR: optional(z.string()),
  GENERATION_TIMEOUT_S: optional(positiveInt).default(600),
  DEFAULT_IMAGE_MODEL: optional(z.string()).default("sd15"),
  // Pruning of old outputs (and their job records): 0 turns a limit off.
  OUTPUT_MAX_AGE_DAYS: optional(nonNegativeNumber).default(30),
  OUTPUT_MAX_COUNT: optional(z.coerce.number().int().nonnegative()).default(1000),

  // Ollama and the LLM
  OLLAMA_BASE_URL: optional(z.url()).default("http://127.0.0.1:11434"),
  LLM_MODEL: optional(z.string()).default("qwen2.5:3b"),
  // Ollama's keep_alive: seconds as a number, or a Go duration ("5m"); negative = forever.
  LLM_KEEP_ALIVE: optional(z.string().regex(/^-?\d+(\.\d+)?([smh]|ms)?$/, "a number of seconds or a duration like 5m")).default("-1"),
  LLM_NUM_CTX: optional(positiveInt),
  // What Ollama holds after a burst of images: the models it held before the burst
  // (`previous`), LLM_MODEL alone (`default`), or nothing, leaving VRAM free (`none`).
  LLM_RESTORE: optional(
    z.enum(["previous", "default", "none"], {
      error: (issue) =>
        `expected previous (the models Ollama held before the images), default (LLM_MODEL only) or none (leave VRAM free), got '${String(issue.input)}'`,
    }),
  ).default("previous"),
  REFINE_TIMEOUT_S: optional(nonNegativeNumber).default(60),
  UNLOAD_TIMEOUT_S: optional(nonNegativeNumber).default(30),
  NVIDIA_SMI: optional(z.string()),

  // GPU scheduler
  MAX_QUEUE: optional(positiveInt).default(16),
  MAX_BATCH: optional(positiveInt).default(8),
  // swap: the LLM always leaves VRAM for a drawing. fit: a drawing that fits beside the LLM
  // (its need + VRAM_MARGIN_MB within the card's free memory) runs without a swap. Unset:
  // fit when a memory tool (nvidia-smi, rocm-smi) is found, else swap.
  VRAM_POLICY: optional(
    z.enum(["swap", "fit"], {
      error: (issue) => `expected swap (always move the LLM out) or fit (only when a drawing does not fit beside it), got '${String(issue.input)}'`,
    }),
  ),
  VRAM_MARGIN_MB: optional(z.coerce.number().int().nonnegative()).default(768),
  ROCM_SMI: optional(z.string()),
});

export type Env = z.infer<typeof envSchema>;
