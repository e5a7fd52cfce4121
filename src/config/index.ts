export { loadConfig, ConfigError, type Config } from "./config.js";
export { locateExecutable } from "./locate-executable.js";
export { toolOutput } from "./tool-output.js";
