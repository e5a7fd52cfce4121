import { loadConfig } from "../config/index.js";
import { bootstrap, type Bootstrapped } from "./bootstrap.js";

/**
 * The LangGraph dev server (`npm run studio`) loads two entry points into one process:
 * the graph (graphs/studio.ts) and the HTTP app (src/server/studio-app.ts). Both take
 * what they run with from here, so the process has one GPU scheduler and owns the GPU
 * lock once. Built on first use, from the environment the dev server was started with.
 */
let studio: Bootstrapped | undefined;

export function studioBootstrap(): Bootstrapped {
  studio ??= bootstrap(loadConfig(), "studio");
  return studio;
}
