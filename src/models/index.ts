export * from "./model-entry.js";
export * from "./registry.js";
export { builtinModels, defaultModelAliases } from "./builtin-models.js";
