import { locateExecutable, type Config } from "../config/index.js";
import { sdCliVersion } from "../diffusion/index.js";
import { checkOllama } from "../llm/index.js";
import type { ModelRegistry } from "../models/index.js";

/**
 * What DiffuGen needs before it can chat and draw, in a few plain lines, and the commands
 * that fix what is missing: Ollama reachable with the LLM installed, sd-cli found and
 * running (`--version`), the model files on disk. The same facts /health gathers
 * (src/server/routes/health.ts). `diffugen serve` prints it once it listens;
 * `diffugen status` uses the next steps.
 */

export interface ReadinessFacts {
  ollama: {
    reachable: boolean;
    baseUrl: string;
    version?: string | undefined;
    model: string;
    /** undefined: unknown (Ollama down, or its list failed). */
    modelInstalled?: boolean | undefined;
    error?: string | undefined;
  };
  sd: {
    bin: string;
    found: boolean;
    path?: string | null | undefined;
    version: string | null;
    versionError?: string | undefined;
  };
  /** sd.cpp's server (SD_SERVER_BIN), which SD_BACKEND may use to keep the model loaded for a burst. */
  sdServer?: { bin: string; found: boolean; path: string | null; backend: Config["sd"]["backend"] } | undefined;
  models: { name: string; ready: boolean }[];
  /** The model to fetch first: DEFAULT_IMAGE_MODEL. */
  defaultModel: string | undefined;
}

export interface NextStep {
  command: string;
  why: string;
}

const ollamaTimeoutMs = 2_000;

export async function gatherReadiness(
  config: Config,
  registry: ModelRegistry,
  sdEnv?: Record<string, string | undefined>,
): Promise<ReadinessFacts> {
  const sdPath = locateExecutable(config.sd.bin);
  const serverPath = locateExecutable(config.sd.serverBin);
  const [ollama, sdVersion] = await Promise.all([
    checkOllama(config.llm, { timeoutMs: ollamaTimeoutMs }),
    sdPath === undefined ? Promise.resolve(undefined) : sdCliVersion(config.sd.bin, sdEnv),
  ]);
  let defaultModel: string | undefined;
  try {
    defaultModel = registry.resolve().name;
  } catch {
    defaultModel = undefined;
  }
  return {
    ollama,
    sd: {
      bin: config.sd.bin,
      found: sdPath !== undefined,
      path: sdPath ?? null,
      version: sdVersion?.version ?? null,
      versionError: sdVersion?.error,
    },
    sdServer: { bin: config.sd.serverBin, found: serverPath !== undefined, path: serverPath ?? null, backend: config.sd.backend },
    models: registry.list().map((entry) => ({ name: entry.name, ready: registry.missingFiles(entry).length === 0 })),
    defaultModel,
  };
}

/** One command per problem, in the order to run them. */
export function nextSteps(facts: ReadinessFacts, cli: string): NextStep[] {
  const steps: NextStep[] = [];
  const { ollama, sd } = facts;
  if (!ollama.reachable) {
    steps.push({ command: "ollama serve", why: `start Ollama (or set OLLAMA_BASE_URL; now ${ollama.baseUrl})` });
    steps.push({ command: `ollama pull ${ollama.model}`, why: "the LLM (LLM_MODEL), if it is not installed yet" });
  } else if (ollama.modelInstalled === false) {
    steps.push({ command: `ollama pull ${ollama.model}`, why: "the LLM (LLM_MODEL) is not installed" });
  }
  if (!sd.found) {
    steps.push({ command: `${cli} setup`, why: "downloads sd-cli for this box and prints the SD_CPP_BIN line to set" });
  } else if (sd.version === null) {
    steps.push({ command: `${sd.path ?? sd.bin} --version`, why: "sd-cli does not run: this shows why" });
    steps.push({ command: `${cli} setup --force`, why: "or install a release build for this box" });
  }
  if (facts.sdServer?.backend === "server" && !facts.sdServer.found) {
    steps.push({ command: `SD_SERVER_BIN=/path/to/sd-server`, why: "SD_BACKEND=server needs sd.cpp's sd-server (it comes with sd-cli in sd.cpp's builds), or set SD_BACKEND=auto" });
  }
  const missing = facts.models.filter((m) => !m.ready);
  if (missing.length > 0) {
    const wanted = missing.find((m) => m.name === facts.defaultModel) ?? (facts.models.some((m) => m.ready) ? undefined : missing[0]);
    if (wanted) {
      const which = wanted.name === facts.defaultModel ? "the default model's files (DEFAULT_IMAGE_MODEL)" : "a model's files";
      steps.push({ command: `${cli} models pull ${wanted.name}`, why: which });
    }
  }
  return steps;
}

/** `  command   # why` lines, aligned. */
export function renderSteps(steps: NextStep[], indent = "  "): string[] {
  const width = Math.max(...steps.map((s) => s.command.length));
  return steps.map((s) => `${indent}${s.command.padEnd(width)}  # ${s.why}`);
}

/** The summary `diffugen serve` prints at start: a few lines, no JSON. */
export function renderReadiness(facts: ReadinessFacts, cli: string): string[] {
  const { ollama, sd } = facts;
  const steps = nextSteps(facts, cli);
  const out: string[] = [];
  out.push(steps.length === 0 ? "Ready: Ollama, the LLM, sd-cli and the default model's files are all here." : "Not ready yet:");
  const llm =
    ollama.modelInstalled === true ? `LLM ${ollama.model} installed` : ollama.modelInstalled === false ? `LLM ${ollama.model} NOT installed` : `LLM ${ollama.model}`;
  out.push(
    ollama.reachable
      ? `  Ollama${ollama.version ? ` ${ollama.version}` : ""} at ${ollama.baseUrl}: ${llm}`
      : `  Ollama at ${ollama.baseUrl}: not reachable${ollama.error ? ` (${ollama.error})` : ""}; ${llm}`,
  );
  out.push(
    !sd.found
      ? `  sd-cli: not found (SD_CPP_BIN=${sd.bin})`
      : sd.version !== null
        ? `  sd-cli: ${sd.version} (${sd.path ?? sd.bin})`
        : `  sd-cli: ${sd.path ?? sd.bin} does not run${sd.versionError ? ` (${sd.versionError})` : ""}`,
  );
  if (facts.sdServer) out.push(`  sd-server: ${sdServerLine(facts.sdServer)}`);
  const ready = facts.models.filter((m) => m.ready).map((m) => m.name);
  const mark = (name: string) => (name === facts.defaultModel ? `${name} (default)` : name);
  out.push(
    ready.length > 0
      ? `  models with all their files: ${ready.map(mark).join(", ")}${facts.defaultModel && !ready.includes(facts.defaultModel) ? `; not the default, ${facts.defaultModel}` : ""}`
      : `  models with all their files: none${facts.defaultModel ? ` (the default is ${facts.defaultModel})` : ""}`,
  );
  if (steps.length > 0) out.push("Next:", ...renderSteps(steps));
  return out;
}

/** Whether images will keep the model loaded across a burst, in a few words. */
function sdServerLine(server: NonNullable<ReadinessFacts["sdServer"]>): string {
  if (server.backend === "cli") return "not used (SD_BACKEND=cli: a fresh sd-cli per image)";
  if (server.found) return `${server.path ?? server.bin}: keeps the model loaded across a burst of images`;
  return server.backend === "server"
    ? `not found (SD_SERVER_BIN=${server.bin}), but SD_BACKEND=server needs it`
    : `not found (SD_SERVER_BIN=${server.bin}): every image runs a fresh sd-cli and loads the model`;
}
