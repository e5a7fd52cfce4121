import { studioBootstrap } from "../bootstrap/studio.js";
import { createApp } from "./app.js";
import { loadServerOptions } from "./server-config.js";

/**
 * The HTTP API as the LangGraph dev server mounts it (langgraph.json `http.app`), on the
 * same job runner and GPU scheduler as the graph Studio runs (graphs/studio.ts).
 */
const studio = studioBootstrap();
export const app = createApp(studio.runner, { ...loadServerOptions(), gate: studio.gate });
