import net from "node:net";

/**
 * A loopback port nobody listens on now: bound on port 0, read, let go. A test hands it to
 * a process that will listen there, or uses it as an address where nothing answers.
 */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The same, named for its use as an address where nothing answers (a closed port). */
export const closedPort = freePort;
