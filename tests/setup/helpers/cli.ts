// The setup commands as `diffugen` will run them (src/cli/main.ts registers them the same way).
import { Command } from "commander";
import { registerModelsCommand } from "../../../src/cli/models-command.js";
import { registerSetupCommand } from "../../../src/cli/setup-command.js";
import { loadConfig } from "../../../src/config/index.js";

const program = new Command().name("diffugen").showHelpAfterError();
registerModelsCommand(program, () => loadConfig());
registerSetupCommand(program, () => loadConfig());
await program.parseAsync(process.argv);
