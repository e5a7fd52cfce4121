import { Hono } from "hono";
import { afterEach, expect, it } from "vitest";
import { createApp } from "../../src/server/index.js";
import { startStack, type Stack } from "../helpers/stack.js";

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

it("mounted at / in the LangGraph dev server, the API key guards DiffuGen's routes and not the dev server's own", async () => {
  stack = await startStack();
  // What langgraph.json `http.app` does: the dev server routes our app first, then its own API.
  const devServer = new Hono();
  devServer.route("/", createApp(stack.runner, { apiKey: "sekrit" }));
  devServer.get("/threads/search", (c) => c.json([]));
  devServer.post("/runs/wait", (c) => c.json({ ok: true }));

  expect((await devServer.request("/threads/search")).status).toBe(200);
  expect((await devServer.request("/runs/wait", { method: "POST", body: "{}" })).status).toBe(200);
  expect((await devServer.request("/v1/models")).status).toBe(401);
  expect((await devServer.request("/v1/models", { headers: { authorization: "Bearer sekrit" } })).status).toBe(200);
  expect((await devServer.request("/generate", { method: "POST", body: "{}" })).status).toBe(401);
  expect((await devServer.request("/images/x.png")).status).toBe(401);
  expect((await devServer.request("/health")).status).toBe(200);
});
