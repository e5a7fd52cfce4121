// First: loads .env (or --env-file) before any other module reads the environment.
import "./load-env.js";
import { Command } from "commander";
import { ConfigError, loadConfig, type Config } from "../config/index.js";
import { GpuOwnedElsewhereError } from "../gpu/index.js";
import { ModelsConfigError } from "../models/index.js";
import { ServerConfigError, UnsafeListenerError } from "../server/index.js";
import { registerGenerateCommand } from "./generate-command.js";
import { registerModelsCommand } from "./models-command.js";
import { registerServeCommand } from "./serve-command.js";
import { registerSetupCommand } from "./setup-command.js";
import { registerStatusCommand } from "./status-command.js";

/** `diffugen`: the command-line entry (bin/diffugen.js runs the compiled form of this file). */

/** Reads the environment; a bad variable ends the process with a message naming it. */
function configOrExit(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`diffugen: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

const program = new Command()
  .name("diffugen")
  .description("One small GPU that both chats and draws: Ollama + stable-diffusion.cpp behind OpenAI's API")
  .option("--env-file <path>", "read settings from this file instead of ./.env (variables already set win)")
  .showHelpAfterError();

registerServeCommand(program, configOrExit);
registerGenerateCommand(program, configOrExit);
registerModelsCommand(program, configOrExit);
registerSetupCommand(program, configOrExit);
registerStatusCommand(program, configOrExit);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // Problems a user can fix get one clear line, not a stack trace.
  if (err instanceof GpuOwnedElsewhereError || err instanceof ModelsConfigError || err instanceof ConfigError || err instanceof ServerConfigError || err instanceof UnsafeListenerError) {
    process.stderr.write(`diffugen: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    throw err;
  }
}
