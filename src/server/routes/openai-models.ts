import { Hono } from "hono";
import type { AppEnv, ServerContext } from "../server-context.js";

/**
 * GET /v1/models: the chat models that draw (`diffugen` with the default image model,
 * `diffugen:<model>` for each) and the image models themselves, for image clients.
 * Every registry model is listed; `available: false` marks one whose weights are not
 * installed (asking for it answers 503 model_files_missing).
 */
export function openaiModelsRoutes(ctx: ServerContext) {
  return new Hono<AppEnv>().get("/models", (c) => {
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
    const data = [
      model("diffugen", `Chat with ${config.llm.model}; draws with ${defaultModel}`, defaultAvailable, "chat"),
      ...entries.map(({ entry, available }) => model(`diffugen:${entry.name}`, `Chat with ${config.llm.model}; draws with ${entry.description || entry.name}`, available, "chat")),
      ...entries.map(({ entry, available }) => model(entry.name, entry.description || entry.name, available, "image")),
    ];
    return c.json({ object: "list", data });
  });
}
