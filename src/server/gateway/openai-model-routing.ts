import type { ModelRegistry } from "../../models/index.js";

/**
 * Whose model a name on the OpenAI API is. DiffuGen keeps every name its chat route answers
 * today: `diffugen`, `diffugen:<anything>` (an unknown one is DiffuGen's 404), and any image
 * model name or alias the registry knows (`sd15`, `dall-e-3`...). Every other name is an
 * Ollama model, and its calls go to Ollama through the GPU scheduler.
 */
export function isDiffugenModel(registry: Pick<ModelRegistry, "find">, model: string): boolean {
  const key = model.trim().toLowerCase();
  return key === "diffugen" || key.startsWith("diffugen:") || registry.find(model) !== undefined;
}
