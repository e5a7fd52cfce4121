import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { loadServerOptions } from "../../src/server/server-config.js";
import { LLM_MODEL } from "../helpers/stack.js";
import { startServerStack, type ServerStack } from "../server/harness.js";

/** GET /v1/models: DiffuGen's models, then every model Ollama has installed. */

let s: ServerStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

describe("GET /v1/models lists DiffuGen's and Ollama's models", () => {
  it("DiffuGen's entries unchanged and first, then Ollama's (owned_by ollama, created from modified_at)", async () => {
    s = await startServerStack({ ollama: { installed: [LLM_MODEL, "llama3.2:1b", "nomic-embed-text"], resident: [LLM_MODEL] } });
    const ids: string[] = [];
    const models: OpenAI.Models.Model[] = [];
    for await (const model of s.client.models.list()) {
      ids.push(model.id);
      models.push(model);
    }
    const names = s.stack.deps.registry.names();
    const own = ["diffugen", ...names.map((n) => `diffugen:${n}`), ...names];
    expect(ids).toEqual([...own, "qwen2.5:3b", "llama3.2:1b", "nomic-embed-text:latest"]);
    expect(models.slice(0, own.length).every((m) => m.owned_by === "diffugen")).toBe(true);
    // The fake's /api/tags says modified_at 2025-06-01T12:00:00Z.
    expect(models.slice(own.length)).toEqual(
      ["qwen2.5:3b", "llama3.2:1b", "nomic-embed-text:latest"].map((id) => ({ id, object: "model", created: Date.UTC(2025, 5, 1, 12) / 1000, owned_by: "ollama" })),
    );

    // One entry, DiffuGen's or Ollama's (the SDK encodes the ':').
    expect(await s.client.models.retrieve("llama3.2:1b")).toEqual({ id: "llama3.2:1b", object: "model", created: Date.UTC(2025, 5, 1, 12) / 1000, owned_by: "ollama" });
    expect(await s.client.models.retrieve("diffugen:sd15")).toMatchObject({ id: "diffugen:sd15", owned_by: "diffugen", kind: "chat" });
    const missing = await s.client.models.retrieve("mistral:7b").catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect((missing as InstanceType<typeof OpenAI.NotFoundError>).error).toMatchObject({ type: "invalid_request_error", param: "model", code: "model_not_found" });
  });

  it("a name DiffuGen answers to stays DiffuGen's: an Ollama model of that name is not listed twice", async () => {
    s = await startServerStack({ ollama: { installed: [LLM_MODEL, "diffugen:sd15", "sd15"], resident: [LLM_MODEL] } });
    const models = (await s.client.models.list()).data;
    expect(models.filter((m) => m.id === "diffugen:sd15")).toEqual([expect.objectContaining({ owned_by: "diffugen" })]);
    // Ollama lists `sd15` as `sd15:latest`, a name the registry does not know: a chat for it goes to Ollama.
    expect(models.slice(-2).map((m) => [m.id, m.owned_by])).toEqual([
      [LLM_MODEL, "ollama"],
      ["sd15:latest", "ollama"],
    ]);
  });

  it("Ollama down: still 200 with DiffuGen's models", async () => {
    s = await startServerStack();
    await s.stack.ollama.setFault({ kind: "down" });
    const res = await fetch(`${s.url}/v1/models`);
    expect(res.status).toBe(200);
    const list = (await res.json()) as { object: string; data: { id: string; owned_by: string }[] };
    expect(list.object).toBe("list");
    expect(list.data.map((m) => m.id)).toContain("diffugen");
    expect(list.data.every((m) => m.owned_by === "diffugen")).toBe(true);
    // And when Ollama answers an error instead.
    await s.stack.ollama.setFault({ kind: "status", status: 500 }, { on: ["tags"] });
    expect((await s.client.models.list()).data.every((m) => m.owned_by === "diffugen")).toBe(true);
  });
});

describe("GATEWAY_WAIT_STATUS", () => {
  it("defaults to on; true/false/1/0; anything else names the variable", () => {
    expect(loadServerOptions({}).gatewayWaitStatus).toBe(true);
    expect(loadServerOptions({ GATEWAY_WAIT_STATUS: "false" }).gatewayWaitStatus).toBe(false);
    expect(loadServerOptions({ GATEWAY_WAIT_STATUS: "0" }).gatewayWaitStatus).toBe(false);
    expect(loadServerOptions({ GATEWAY_WAIT_STATUS: "1" }).gatewayWaitStatus).toBe(true);
    expect(loadServerOptions({ GATEWAY_WAIT_STATUS: "" }).gatewayWaitStatus).toBe(true);
    expect(() => loadServerOptions({ GATEWAY_WAIT_STATUS: "sometimes" })).toThrow(/GATEWAY_WAIT_STATUS: true or false/);
  });
});
