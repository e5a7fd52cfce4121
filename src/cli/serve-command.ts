import type { Command } from "commander";
import { bootstrap } from "../bootstrap/index.js";
import type { Config } from "../config/index.js";
import { cliCommand } from "./cli-command.js";
import { gatherReadiness, renderReadiness } from "./readiness.js";
import { checkListenerSafety, GatewayListenError, listenersOf, loadServerOptions, startServer, type RunningServer } from "../server/index.js";

/**
 * `diffugen serve`. On SIGTERM or SIGINT it shuts down gracefully: no new connections or
 * jobs, running jobs get SHUTDOWN_GRACE_S to finish (their clients get their answers),
 * then are cancelled (sd-cli killed); the LLM is put back in VRAM; exit 0. A second signal
 * cancels the running jobs at once (still waiting for sd-cli to end and the LLM to come
 * back); a third leaves at once, exit 1.
 */
export function registerServeCommand(program: Command, loadConfig: () => Config): void {
  program
    .command("serve")
    .description(
      "serve the OpenAI-compatible API (and the original DiffuGen API) on HOST:PORT; " +
        "SIGTERM/Ctrl-C lets running jobs finish (SHUTDOWN_GRACE_S, default 30 s), a second Ctrl-C cancels them",
    )
    .option("-p, --port <port>", "port (default PORT, 5199)")
    .option("--host <host>", "address to listen on (default HOST, 127.0.0.1)")
    .action(async (options: { port?: string; host?: string }) => {
      const config = loadConfig();
      const serverOptions = loadServerOptions(); // a bad server variable stops us before we own the GPU
      const { shutdownGraceMs } = serverOptions;
      // So does an open listener without a key (UnsafeListenerError: main prints its message, exit 2).
      const safety = checkListenerSafety(listenersOf(options.host ?? config.server.host, serverOptions), serverOptions);
      if (safety.warning !== undefined) process.stderr.write(`diffugen: ${safety.warning}\n`);
      // This process becomes the GPU's one owner; a second DiffuGen process is refused.
      const app = bootstrap(config, "serve");
      // Signals are handled from before the server listens: a service manager may stop us
      // the moment we are up (or while we start), and the default would leave no time to clean up.
      const say = (message: string) => process.stdout.write(`${message}\n`);
      const starting = startServer(app.runner, {
        port: options.port === undefined ? undefined : Number(options.port),
        host: options.host,
        gate: app.gate,
      });
      let signals = 0;
      const onSignal = (signal: NodeJS.Signals) => {
        signals += 1;
        if (signals === 1) {
          say(`${signal}: shutting down: no new requests; running jobs get ${shutdownGraceMs / 1000} s to finish (SHUTDOWN_GRACE_S)`);
          void shutdown();
        } else if (signals === 2) {
          say(`${signal} again: cancelling the running jobs now (still waiting for sd-cli to end and the LLM to reload; once more to quit at once)`);
          void starting.then((server) => server.cancelJobs(), () => undefined);
        } else {
          say(`${signal} a third time: quitting without waiting (the LLM may not be loaded again)`);
          process.exit(1);
        }
      };
      const shutdown = async () => {
        try {
          const server = await starting;
          await server.close({ onStep: say });
          await app.close();
          say("stopped");
          process.exit(0);
        } catch (err) {
          process.stderr.write(`diffugen: shutdown failed: ${err instanceof Error ? err.message : String(err)}\n`);
          process.exit(1);
        }
      };
      process.on("SIGTERM", onSignal);
      process.on("SIGINT", onSignal);

      let server: RunningServer;
      try {
        server = await starting;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "EADDRINUSE" && code !== "EACCES" && code !== "EADDRNOTAVAIL") throw err;
        // The second listener's error names its own variables (OLLAMA_GATEWAY_PORT, OLLAMA_GATEWAY_HOST).
        if (err instanceof GatewayListenError) process.stderr.write(`diffugen: ${err.message}\n`);
        else process.stderr.write(`diffugen: cannot listen on ${options.host ?? config.server.host}:${options.port ?? config.server.port} (${code}); set PORT or HOST\n`);
        process.exit(2);
      }
      if (signals === 0) {
        say(`DiffuGen listening on ${server.url} (OpenAI API at ${server.url}/v1, Ollama API at ${server.url}/ollama, the operator page at ${server.url}/)`);
        if (server.ollamaGatewayUrl !== undefined) {
          say(`Ollama API also at ${server.ollamaGatewayUrl} (OLLAMA_GATEWAY_PORT): OLLAMA_HOST=${server.ollamaGatewayUrl.replace(/^http:\/\//, "")} ollama run ${config.llm.model}`);
        }
        // After the listening line, never before: the checks take up to a few seconds.
        void gatherReadiness(config, app.deps.registry, app.deps.sdEnv).then(
          (facts) => {
            if (signals === 0) say(renderReadiness(facts, cliCommand()).join("\n"));
          },
          () => undefined,
        );
      }
    });
}
