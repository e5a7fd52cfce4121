import type { AddressInfo } from "node:net";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { serve } from "@hono/node-server";
import type { JobRunner } from "../jobs/index.js";
import { createApp, type AppOptions } from "./app.js";
import { atRootOf, listenOllamaGateway, pointsAtGateway } from "./gateway/ollama-listener.js";
import { ollamaGatewayMount } from "./routes/ollama-gateway.js";
import { applyRequestTimeouts, headerTimeoutServerOptions } from "./security/body-deadline.js";
import { checkListenerSafety, type Listener } from "./security/listener-safety.js";
import { defaultSecurityOptions } from "./security/security-options.js";
import { loadServerOptions } from "./server-config.js";

export interface RunningServer {
  /** `http://host:port`, with the port actually bound (PORT=0 picks a free one). */
  url: string;
  port: number;
  /**
   * The second listener's `http://host:port` when OLLAMA_GATEWAY_PORT is set (Ollama's API at
   * its root; port 0 picks a free one); Ollama's API is always at `${url}/ollama` too.
   */
  ollamaGatewayUrl: string | undefined;
  ollamaGatewayPort: number | undefined;
  /** The server's job runner (its jobs, their store, observers). */
  runner: JobRunner;
  /**
   * Graceful shutdown: stops accepting connections and new jobs, lets the running jobs
   * finish for up to the grace period (their clients get their full answers), then cancels
   * what is left (sd-cli is killed, the GPU given back), waits for the LLM to be back in
   * VRAM, and closes the remaining connections. Calling it again returns the same promise.
   */
  close(options?: CloseOptions): Promise<void>;
  /**
   * Ends the grace period now (a second Ctrl-C): cancels every running job. close() still
   * waits for sd-cli to end and the LLM to come back before it resolves.
   */
  cancelJobs(): void;
}

export interface CloseOptions {
  /** Told each step of the shutdown, in words for a person (the serve command prints them). */
  onStep?: ((message: string) => void) | undefined;
}

export interface StartServerOptions extends AppOptions {
  port?: number;
  host?: string;
}

/**
 * After the cancel, how long close() waits for the jobs to end: sd-cli gets SIGTERM, then
 * SIGKILL 3 s later (src/diffusion/sd-runner.ts), and the job then gives the GPU back.
 * Longer means a job is stuck; shutdown goes on without it rather than hang forever.
 */
const cancelledJobsWaitMs = 15_000;
/**
 * How long close() waits for the GPU scheduler to settle (the LLM reload that giving the
 * GPU back set off). OllamaResidency gives up a reload after 120 s; this covers it.
 */
const llmReloadWaitMs = 130_000;

/** After the jobs are over, how long answers still being sent may take before connections are cut. */
const lastAnswersWaitMs = 5_000;

const shutdownReason = "the server is shutting down";

/**
 * Serves the API on @hono/node-server, for the runner an entry point's bootstrap built.
 * Options not given come from the environment. Refuses (UnsafeListenerError) to listen
 * beyond loopback without API_KEY, unless ALLOW_UNAUTHENTICATED (security/listener-safety.ts).
 */
export async function startServer(runner: JobRunner, options: StartServerOptions = {}): Promise<RunningServer> {
  const deps = runner.deps;
  const fromEnv = loadServerOptions();
  const appOptions = { ...fromEnv, ...definedOnly(options) };
  // The Ollama gateway's part in shutdown: no new LLM calls once it begins, the last ones cut after the grace.
  const gatewayClosing = new AbortController();
  const gatewayCut = new AbortController();
  const app = createApp(runner, { ...appOptions, shutdown: { closing: gatewayClosing.signal, cut: gatewayCut.signal } });
  const host = options.host ?? deps.config.server.host;
  const port = options.port ?? deps.config.server.port;
  checkListenerSafety(listenersOf(host, appOptions), { apiKey: appOptions.apiKey, allowUnauthenticated: appOptions.allowUnauthenticated ?? false });
  const timeoutMs = appOptions.bodyTimeoutMs ?? defaultSecurityOptions.bodyTimeoutMs;

  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port, hostname: host, serverOptions: headerTimeoutServerOptions(timeoutMs) }, () => resolve(s as Server)) as Server;
    s.once("error", reject);
  });
  // Headers within BODY_TIMEOUT_S; bodies are bounded per route (security/body-deadline.ts).
  applyRequestTimeouts(server, timeoutMs);
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;

  // OLLAMA_GATEWAY_PORT: the same gateway at the root of a port of its own.
  let gateway: Awaited<ReturnType<typeof listenOllamaGateway>> | undefined;
  try {
    if (appOptions.ollamaGatewayPort !== undefined) {
      gateway = await listenOllamaGateway(atRootOf(app.fetch, ollamaGatewayMount), appOptions.ollamaGatewayPort, appOptions.ollamaGatewayHost ?? "127.0.0.1", timeoutMs);
    }
    const listeners = [{ host, port: address.port, mountPath: ollamaGatewayMount }, ...(gateway ? [{ host: appOptions.ollamaGatewayHost ?? "127.0.0.1", port: gateway.port }] : [])];
    if (pointsAtGateway(deps.config.llm.baseUrl, listeners)) {
      throw new Error(`OLLAMA_BASE_URL (${deps.config.llm.baseUrl}) points at DiffuGen's own Ollama gateway: set it to Ollama itself (default http://127.0.0.1:11434)`);
    }
  } catch (err) {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (gateway) await new Promise<void>((resolve) => gateway!.server.close(() => resolve()));
    throw err;
  }
  const servers = gateway ? [server, gateway.server] : [server];

  // The grace period ends early when cancelJobs() is called.
  let endGrace: () => void = () => undefined;
  const graceCut = new Promise<"cut">((resolve) => (endGrace = () => resolve("cut")));
  let cancelled = false;
  const cancelJobs = () => {
    cancelled = true;
    gatewayCut.abort(new Error(shutdownReason));
    endGrace();
    runner.cancelAll(shutdownReason);
  };

  const requests = trackRequests(servers);
  /** Nothing left to wait for: no job running and every answer sent. */
  const whenQuiet = async () => {
    while (runner.activeJobs > 0 || requests.open > 0) {
      await runner.whenIdle();
      await requests.whenDone();
    }
  };

  let closing: Promise<void> | undefined;
  const close = async (onStep: (message: string) => void) => {
    // No new connections; keep-alive connections with no request in flight go now. The
    // ones streaming an answer stay open until it is sent.
    const closed = Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    for (const s of servers) s.closeIdleConnections();
    runner.close(); // a request still arriving on an open connection gets 503 shutting_down
    gatewayClosing.abort(new Error(shutdownReason)); // so does a new LLM call through the gateway

    const running = runner.activeJobs;
    if (running > 0 && !cancelled) {
      const graceMs = appOptions.shutdownGraceMs;
      onStep(`waiting up to ${formatSeconds(graceMs)} for ${plural(running, "running job")} to finish`);
    }
    // The grace period: jobs finish and their clients get their whole answers (a job is
    // over before its streamed answer is: the last events are written after it).
    const ended = cancelled ? "cut" : await within(appOptions.shutdownGraceMs, Promise.race([whenQuiet().then(() => "quiet" as const), graceCut]));
    // LLM calls still relaying through the gateway are cut too: their leases would hold the GPU scheduler up.
    if (ended !== "quiet") gatewayCut.abort(new Error(shutdownReason));
    if (ended !== "quiet" && runner.activeJobs > 0) {
      onStep(`${ended === "cut" ? "cancelling" : "grace period over: cancelling"} ${plural(runner.activeJobs, "running job")}`);
      cancelJobs();
      // Cancelled jobs end once sd-cli is gone and the GPU is given back; their clients
      // then get the last events (the cancellation) before the connections are closed.
      if ((await within(cancelledJobsWaitMs, whenQuiet())) === "timeout" && runner.activeJobs > 0) {
        onStep(`${plural(runner.activeJobs, "job")} did not end ${formatSeconds(cancelledJobsWaitMs)} after being cancelled; going on without them`);
      }
    }

    // Giving the GPU back sets off the LLM reload: a server that stops leaves Ollama ready to chat.
    const gpu = deps.scheduler.state();
    if (gpu.llm === "loading" || gpu.llm === "unloaded" || gpu.gpu.kind !== "idle") onStep(`waiting for ${deps.config.llm.model} to be back in VRAM`);
    if ((await within(llmReloadWaitMs, deps.scheduler.whenSettled())) === "timeout") {
      onStep(`the GPU scheduler did not settle within ${formatSeconds(llmReloadWaitMs)}; going on`);
    }

    // Answers still being written (a cancelled stream's last event) get a moment more.
    await within(lastAnswersWaitMs, requests.whenDone());
    await runner.dispose();
    for (const s of servers) s.closeAllConnections();
    await closed;
  };

  return {
    url: `http://${shownHost}:${address.port}`,
    port: address.port,
    ollamaGatewayUrl: gateway?.url,
    ollamaGatewayPort: gateway?.port,
    runner,
    close(closeOptions = {}) {
      closing ??= close(closeOptions.onStep ?? (() => undefined));
      return closing;
    },
    cancelJobs,
  };
}

/** The addresses this server will listen on, as the listener check names them. */
export function listenersOf(host: string, options: { ollamaGatewayPort?: number | undefined; ollamaGatewayHost?: string | undefined }): Listener[] {
  return [
    { host, variable: "HOST" },
    ...(options.ollamaGatewayPort === undefined ? [] : [{ host: options.ollamaGatewayHost ?? "127.0.0.1", variable: "OLLAMA_GATEWAY_HOST" }]),
  ];
}

/** Counts the requests whose response is not over yet (sent, or its connection gone), on every listener. */
function trackRequests(servers: Server[]) {
  let open = 0;
  const waiters: (() => void)[] = [];
  const onRequest = (_req: IncomingMessage, res: ServerResponse) => {
    open += 1;
    res.once("close", () => {
      open -= 1;
      if (open === 0) for (const resolve of waiters.splice(0)) resolve();
    });
  };
  for (const server of servers) server.on("request", onRequest);
  return {
    get open() {
      return open;
    },
    whenDone: () => (open === 0 ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve))),
  };
}

/** `promise`'s value, or "timeout" once `ms` have passed. */
async function within<T>(ms: number, promise: Promise<T>): Promise<T | "timeout"> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    // Not unref'd: while shutdown waits, this process must stay up, even with nothing else pending.
    timer = setTimeout(() => resolve("timeout"), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function formatSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}

function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<T>;
}
