import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { root } from "./helpers/diffugen-command.js";

/**
 * `npm run studio` (bin/studio.js) on a taken port: one clear message naming `--port`, exit 1,
 * nothing left running; on a free port it runs `langgraphjs dev` with the same arguments.
 */

const studio = path.join(root, "bin", "studio.js");
let dir: string;
let taken: net.Server | undefined;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-studio-"));
});
afterEach(async () => {
  if (taken) await new Promise<void>((resolve) => taken!.close(() => resolve()));
  taken = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

async function takePort(): Promise<number> {
  taken = net.createServer();
  await new Promise<void>((resolve) => taken!.listen(0, "127.0.0.1", resolve));
  return (taken.address() as net.AddressInfo).port;
}

/** A `langgraphjs` on PATH that prints how it was called. */
function fakeLanggraphjs(): string {
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin, { recursive: true });
  fs.writeFileSync(path.join(bin, "langgraphjs"), '#!/bin/sh\necho "langgraphjs $* analytics=$LANGGRAPH_CLI_NO_ANALYTICS"\n', { mode: 0o755 });
  return [bin, path.dirname(process.execPath)].join(path.delimiter);
}

describe.skipIf(process.platform === "win32")("npm run studio's port check", () => {
  it("a taken port: says so and how to pass --port, exit 1, and never starts langgraphjs", async () => {
    const port = await takePort();
    const result = await execa(process.execPath, [studio, "--port", String(port), "--host", "127.0.0.1"], {
      reject: false,
      timeout: 10_000,
      env: { PATH: fakeLanggraphjs() },
      extendEnv: false,
    });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`port ${port} on 127.0.0.1 is already in use`);
    expect(result.stderr).toContain(`npm run studio -- --port ${port + 1}`);
    expect(result.stdout).not.toContain("langgraphjs dev");
  });

  it("through npm, as users run it: the same message, and npm exits (no server, nothing left waiting)", async () => {
    const port = await takePort();
    const result = await execa("npm", ["run", "--silent", "studio", "--", `--port=${port}`, "-h", "127.0.0.1"], {
      cwd: root,
      reject: false,
      timeout: 30_000,
    });
    expect(result.timedOut).toBe(false);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain(`port ${port} on 127.0.0.1 is already in use`);
    expect(result.stderr).toContain("--port");
  });

  it("a free port: runs langgraphjs dev with the same arguments, analytics off", async () => {
    const result = await execa(process.execPath, [studio, "--port", "0", "--no-browser"], {
      reject: false,
      env: { PATH: fakeLanggraphjs() },
      extendEnv: false,
    });
    // Port 0 is refused: langgraphjs needs a real port.
    expect(result.exitCode).toBe(2);
    const free = await takePort();
    await new Promise<void>((resolve) => taken!.close(() => resolve()));
    taken = undefined;
    const ok = await execa(process.execPath, [studio, "--port", String(free), "--host", "127.0.0.1", "--no-browser"], {
      reject: false,
      env: { PATH: fakeLanggraphjs() },
      extendEnv: false,
    });
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout.trim()).toBe(`langgraphjs dev --port ${free} --host 127.0.0.1 --no-browser analytics=1`);
  });

  it("a non-loopback --host: refused (the dev server's API has no key) unless ALLOW_UNAUTHENTICATED=true", async () => {
    const refused = await execa(process.execPath, [studio, "--port", "2999", "--host", "0.0.0.0"], {
      cwd: dir,
      reject: false,
      env: { PATH: fakeLanggraphjs() },
      extendEnv: false,
    });
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain("refusing to listen on 0.0.0.0");
    expect(refused.stderr).toContain("ALLOW_UNAUTHENTICATED=true");
    expect(refused.stdout).not.toContain("langgraphjs dev");
    // Allowed, from the environment or from ./.env as langgraphjs reads it.
    const free = await takePort();
    await new Promise<void>((resolve) => taken!.close(() => resolve()));
    taken = undefined;
    fs.writeFileSync(path.join(dir, ".env"), "ALLOW_UNAUTHENTICATED=true\n");
    const allowed = await execa(process.execPath, [studio, "--port", String(free), "--host", "0.0.0.0", "--no-browser"], {
      cwd: dir,
      reject: false,
      env: { PATH: fakeLanggraphjs() },
      extendEnv: false,
    });
    expect(allowed.exitCode, allowed.stderr).toBe(0);
    expect(allowed.stdout.trim()).toBe(`langgraphjs dev --port ${free} --host 0.0.0.0 --no-browser analytics=1`);
  });
});
