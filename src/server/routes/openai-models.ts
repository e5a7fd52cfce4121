import { Hono } from "hono";
import { ApiError } from "../errors.js";
import { isDiffugenModel } from "../gateway/openai-model-routing.js";
import { listOllamaModels } from "../gateway/openai-ollama-models.js";
import type { AppEnv, ServerContext } from "../server-context.js";

/**
 * GET /v1/models: the chat models that draw (`diffugen` with the default image model,
 * `diffugen:<model>` for each) and the image models themselves, for image clients.
 * Every registry model is listed; `available: false` marks one whose weights are not
 * installed (asking for it answers 503 model_files_missing).
 *
 * After them, every model Ollama has installed (`owned_by: "ollama"`): the OpenAI routes
 * pass calls for those on to Ollama (openai-passthrough.ts), so one OpenAI connection
 * reaches every model on the box. Ollama being down only shortens the list.
 *
 * GET /v1/models/:id answers one entry of the same list.
 */
export function openaiModelsRoutes(ctx: ServerContext) {
  const diffugenModels = () => {
    const { registry, config } = ctx.deps;
    const created = ctx.startedAt;
    const entries = registry.list().map((entry) => ({ entry, available: registry.missingFiles(entry).length === 0 }));
    const defaultModel = registry.resolve().name;
    const model = (id: string, description: string, available: boolean, kind: "chat" | "image") => ({
      id,
      object: "model" as const,
      created,
      owned_by: "diffugen",
      // Extras clients ignore: what it is, and whether its files are here.
      description,
      kind,
      available,
    });
    const defaultAvailable = entries.find((e) => e.entry.name === defaultModel)?.available ?? false;
    return [
      model("diffugen", `Chat with ${config.llm.model}; draws with ${defaultModel}`, defaultAvailable, "chat"),
      ...entries.map(({ entry, available }) => model(`diffugen:${entry.name}`, `Chat with ${config.llm.model}; draws with ${entry.description || entry.name}`, available, "chat")),
      ...entries.map(({ entry, available }) => model(entry.name, entry.description || entry.name, available, "image")),
    ];
  };

  const allModels = async (signal: AbortSignal) => {
    const own = diffugenModels();
    const ollama = await listOllamaModels(ctx.deps.config.llm.baseUrl, { signal, fallbackCreated: ctx.startedAt });
    if (!ollama.ok && !signal.aborted) ctx.logger.warn({ event: "ollama_models_unlisted" }, ollama.reason);
    // A name DiffuGen answers to stays DiffuGen's (the chat route takes it): not listed twice.
    const theirs = ollama.models.filter((m) => !isDiffugenModel(ctx.deps.registry, m.id));
    return [...own, ...theirs];
  };

  return new Hono<AppEnv>()
    .get("/models", async (c) => c.json({ object: "list", data: await allModels(c.var.clientSignal) }))
    .get("/models/:id{.+}", async (c) => {
      const id = c.req.param("id");
      const found = (await allModels(c.var.clientSignal)).find((m) => m.id === id);
      if (!found) throw new ApiError(404, `The model '${id}' does not exist`, { type: "invalid_request_error", param: "model", code: "model_not_found" });
      return c.json(found);
    });
}
