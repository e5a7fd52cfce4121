import type { Command } from "commander";
import { createOwnedDeps, setProcessWideDeps } from "../../graphs/diffugen/dependencies.js";
import type { Config } from "../config/index.js";
import { startServer } from "../server/index.js";

export function registerServeCommand(program: Command, loadConfig: () => Config): void {
  program
    .command("serve")
    .description("serve the OpenAI-compatible API (and the original DiffuGen API) on HOST:PORT")
    .option("-p, --port <port>", "port (default PORT, 5199)")
    .option("--host <host>", "address to listen on (default HOST, 127.0.0.1)")
    .action(async (options: { port?: string; host?: string }) => {
      const config = loadConfig();
      // This process becomes the GPU's one owner; a second DiffuGen process is refused.
      const deps = createOwnedDeps(config, "diffugen serve");
      setProcessWideDeps(deps);
      const server = await startServer(deps, {
        port: options.port === undefined ? undefined : Number(options.port),
        host: options.host,
      });
      process.stdout.write(`DiffuGen listening on ${server.url} (OpenAI API at ${server.url}/v1)\n`);

      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        process.stdout.write(`${signal}: stopping (running jobs are cancelled, the LLM is reloaded)\n`);
        await server.close();
        await deps.scheduler.close();
        process.exit(0);
      };
      process.on("SIGTERM", () => void stop("SIGTERM"));
      process.on("SIGINT", () => void stop("SIGINT"));
    });
}
