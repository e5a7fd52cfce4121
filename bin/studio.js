#!/usr/bin/env node
// `npm run studio [-- --port N] [-- --host H]`: checks that the port is free, then runs
// `langgraphjs dev` (analytics off) with the same arguments. On a taken port langgraphjs
// would print EADDRINUSE and leave npm, itself and its tsx watcher running with no server;
// this says so at once and exits 1 instead.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";
import { parseEnv } from "node:util";

const args = process.argv.slice(2);

/** The value of -p/--port or -h/--host in langgraphjs dev's own spelling, else the default. */
export function option(argv, short, long, fallback) {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === short || arg === long) return argv[i + 1] ?? fallback;
    if (arg.startsWith(`${long}=`)) return arg.slice(long.length + 1);
  }
  return fallback;
}

const port = Number(option(args, "-p", "--port", "2024"));
const host = option(args, "-h", "--host", "localhost");

/** Resolves null when `host:port` can be bound, else the error code (EADDRINUSE, EACCES...). */
function tryBind(port, host) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", (err) => resolve(err.code ?? err.message));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(null)));
  });
}

if (!Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write(`npm run studio: --port must be a port number (1-65535), got '${option(args, "-p", "--port", "")}'\n`);
  process.exit(2);
}

/** Loopback only (as src/server/security/listener-safety.ts decides): 127.0.0.0/8, ::1, localhost. */
function isLoopback(name) {
  const bare = name.trim().replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (bare === "localhost" || bare === "::1" || bare === "0:0:0:0:0:0:0:1") return true;
  const v4 = (/^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(bare)?.[1] ?? bare).split(".");
  return net.isIPv4(v4.join(".")) && v4[0] === "127";
}

/** ALLOW_UNAUTHENTICATED from the environment, else from ./.env (what langgraphjs dev loads too). */
function allowUnauthenticated() {
  let value = process.env.ALLOW_UNAUTHENTICATED;
  if (value === undefined) {
    try {
      value = parseEnv(readFileSync(".env", "utf8")).ALLOW_UNAUTHENTICATED;
    } catch {
      // no .env: nothing allowed
    }
  }
  return value === "true" || value === "1";
}

// The dev server's own API (threads, runs, the graph) has no key at all, whatever API_KEY
// says: beyond loopback it is an open door to the GPU and every prompt. Refused unless the
// network is declared trusted.
if (!isLoopback(host) && !allowUnauthenticated()) {
  process.stderr.write(
    `npm run studio: refusing to listen on ${host}: the LangGraph dev server's API has no key, so anyone who can reach it could run the graph on your GPU and read every prompt and image.\n` +
      "Keep it on loopback (the default, --host localhost) and reach it through an SSH tunnel, or, on a network you trust, set ALLOW_UNAUTHENTICATED=true.\n",
  );
  process.exit(2);
}

const problem = await tryBind(port, host);
if (problem !== null) {
  const why = problem === "EADDRINUSE" ? "is already in use (another langgraphjs dev, or something else, listens there)" : `cannot be used (${problem})`;
  process.stderr.write(
    `npm run studio: port ${port} on ${host} ${why}.\n` +
      `Stop what listens there, or pick another port:  npm run studio -- --port ${port === 2024 ? 2025 : port + 1}\n` +
      (problem === "EADDRINUSE" ? `(to see what holds it: ss -ltnp 'sport = :${port}'  or  lsof -i :${port})\n` : ""),
  );
  process.exit(1);
}

const child = spawn("langgraphjs", ["dev", ...args], {
  stdio: "inherit",
  env: { ...process.env, LANGGRAPH_CLI_NO_ANALYTICS: "1" },
});
child.on("error", (err) => {
  process.stderr.write(`npm run studio: cannot start langgraphjs (${err.message}); run npm ci first\n`);
  process.exit(1);
});
// Ctrl-C reaches the whole foreground process group already; a SIGTERM sent to this process alone is passed on.
process.on("SIGTERM", () => child.kill("SIGTERM"));
process.on("SIGINT", () => undefined);
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
