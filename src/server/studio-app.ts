import { processWideDeps } from "../../graphs/diffugen/dependencies.js";
import { createApp } from "./app.js";
import { loadServerOptions } from "./server-config.js";

/**
 * The HTTP API as the LangGraph dev server mounts it (langgraph.json `http.app`). It uses
 * the process-wide capabilities, the same ones the graph uses when Studio runs it, so the
 * dev server process holds exactly one GPU scheduler for both.
 */
export const app = createApp(processWideDeps("LangGraph dev server (npm run studio)"), loadServerOptions());
