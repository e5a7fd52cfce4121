import net from "node:net";

/**
 * No open listener without a key. DiffuGen fronts a GPU, every user's prompts and images, and
 * (through /ollama) the box's Ollama models; Ollama itself binds to 127.0.0.1 for this reason.
 * So a listener on anything but loopback needs API_KEY, or an explicit ALLOW_UNAUTHENTICATED
 * for a network the owner trusts (then a warning at every start). Loopback without a key is
 * as it always was: only programs on this machine can reach it.
 */

export interface Listener {
  /** The address as configured (HOST, OLLAMA_GATEWAY_HOST). */
  host: string;
  /** The variable that sets it (`HOST`, `OLLAMA_GATEWAY_HOST`), named in the message. */
  variable: string;
}

export interface ExposureSettings {
  apiKey: string | undefined;
  allowUnauthenticated: boolean;
}

/** Why the server refuses to start; its message says the three ways out. */
export class UnsafeListenerError extends Error {
  constructor(readonly exposed: readonly Listener[]) {
    super(refusalMessage(exposed));
    this.name = "UnsafeListenerError";
  }
}

/**
 * Loopback only: 127.0.0.0/8, ::1 (and an IPv4-mapped 127.x), `localhost`. Anything else, a
 * wildcard (0.0.0.0, ::), a LAN address or a host name, can be reached from elsewhere.
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.trim().replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (bare === "localhost") return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(bare)?.[1];
  const address = mapped ?? bare;
  if (net.isIPv4(address)) return address.split(".")[0] === "127";
  if (net.isIPv6(address)) return loopbackV6.check(address, "ipv6");
  return false;
}

const loopbackV6 = new net.BlockList();
loopbackV6.addAddress("::1", "ipv6");

/**
 * Throws UnsafeListenerError when a listener is reachable from elsewhere and nothing guards it;
 * returns the warning to print when ALLOW_UNAUTHENTICATED is what lets it start.
 */
export function checkListenerSafety(listeners: readonly Listener[], settings: ExposureSettings): { warning?: string } {
  if (settings.apiKey !== undefined) return {};
  const exposed = listeners.filter((l) => !isLoopbackHost(l.host));
  if (exposed.length === 0) return {};
  if (!settings.allowUnauthenticated) throw new UnsafeListenerError(exposed);
  return {
    warning:
      `warning: listening on ${described(exposed)} without an API key (ALLOW_UNAUTHENTICATED=true): ` +
      "anyone who can reach it can queue GPU jobs, read every prompt and image, and pull or delete Ollama's models through /ollama. " +
      "Set API_KEY to close it.",
  };
}

function refusalMessage(exposed: readonly Listener[]): string {
  return [
    `refusing to listen on ${described(exposed)} without an API key: anyone who can reach ${exposed.length === 1 ? "that address" : "those addresses"} could queue GPU jobs, read every prompt and image, and pull or delete Ollama's models through /ollama.`,
    "Fix it one of three ways:",
    "  - set API_KEY, e.g. API_KEY=$(openssl rand -hex 24), and give that key to your clients;",
    `  - or listen on loopback only: ${exposed.map((l) => `${l.variable}=127.0.0.1`).join(" ")};`,
    "  - or, on a network you trust, set ALLOW_UNAUTHENTICATED=true (a warning is printed at every start).",
  ].join("\n");
}

function described(listeners: readonly Listener[]): string {
  return listeners.map((l) => `${l.host} (${l.variable})`).join(" and ");
}
