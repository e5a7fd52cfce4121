import type { IncomingMessage, ServerResponse } from "node:http";
import type { Context } from "hono";

/**
 * The node request and response behind a Hono context, when it runs on @hono/node-server
 * (its `env` bindings; the second listener passes them on too). Undefined under `app.request()`
 * in tests, or when the app is mounted elsewhere: there is no socket to protect then.
 */
export function nodeBindings(c: Context): { incoming: IncomingMessage; outgoing: ServerResponse } | undefined {
  const env = c.env as { incoming?: IncomingMessage; outgoing?: ServerResponse } | undefined;
  return env?.incoming && env.outgoing ? { incoming: env.incoming, outgoing: env.outgoing } : undefined;
}

/**
 * Who a request comes from, for per-client limits: the address of the TCP peer. Proxy headers
 * (X-Forwarded-For) are not read: any client can write them, so a limit keyed on them is no
 * limit. Behind a reverse proxy, or for OpenWebUI's server-side calls, every request is the
 * proxy's or OpenWebUI's address: one client, whose limit its users share.
 */
export function clientAddress(c: Context): string {
  const address = nodeBindings(c)?.incoming.socket?.remoteAddress;
  if (address === undefined) return "unknown";
  // The same IPv4 client seen through a dual-stack socket.
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}
