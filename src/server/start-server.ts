import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import type { DiffugenDeps } from "../../graphs/diffugen/dependencies.js";
import { JobRunner } from "../jobs/index.js";
import { createApp, type AppOptions } from "./app.js";
import { loadServerOptions } from "./server-config.js";

export interface RunningServer {
  /** `http://host:port`, with the port actually bound (PORT=0 picks a free one). */
  url: string;
  port: number;
  /**
   * Stops accepting requests, cancels the running jobs (sd-cli is killed, the GPU given
   * back, the LLM reloaded), waits for them, then closes the remaining connections.
   */
  close(): Promise<void>;
}

export interface StartServerOptions extends AppOptions {
  port?: number;
  host?: string;
  /** How long close() waits for cancelled jobs before cutting connections. */
  shutdownGraceMs?: number;
}

/** Serves the API on @hono/node-server. Options not given come from the environment. */
export async function startServer(deps: DiffugenDeps, options: StartServerOptions = {}): Promise<RunningServer> {
  const fromEnv = loadServerOptions();
  const runner = options.runner ?? new JobRunner(deps);
  const app = createApp(deps, { ...fromEnv, ...definedOnly(options), runner });
  const host = options.host ?? deps.config.server.host;
  const port = options.port ?? deps.config.server.port;

  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port, hostname: host }, () => resolve(s as Server)) as Server;
    s.once("error", reject);
  });
  // Generations are slow: never time a request out while its answer is being made.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${shownHost}:${address.port}`,
    port: address.port,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        runner.close();
        runner.cancelAll();
        const grace = new Promise<void>((resolve) => setTimeout(resolve, options.shutdownGraceMs ?? 10_000).unref());
        await Promise.race([runner.whenIdle(), grace]);
        await runner.dispose();
        server.closeAllConnections();
        await closed;
      })();
      return closing;
    },
  };
}

function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<T>;
}
