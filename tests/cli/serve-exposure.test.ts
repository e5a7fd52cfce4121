import fs from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { afterEach, describe, expect, it } from "vitest";
import { checkListenerSafety, isLoopbackHost, UnsafeListenerError } from "../../src/server/security/listener-safety.js";
import { diffugenCommand } from "./helpers/diffugen-command.js";
import { startFakeBox, type FakeBox } from "./helpers/fake-box.js";
import { startServe, type ServeProcess } from "./helpers/serve-process.js";

/**
 * `diffugen serve` refuses a listener beyond loopback without API_KEY (issue 16): one message
 * naming the three fixes, no stack trace, exit 2, and before it takes the GPU. With
 * ALLOW_UNAUTHENTICATED=true it starts with a warning; with a key it starts quietly and keeps
 * its details for the key holder. Loopback without a key starts as it always did.
 */

let box: FakeBox | undefined;
let serve: ServeProcess | undefined;

afterEach(async () => {
  await serve?.kill();
  serve = undefined;
  await box?.close();
  box = undefined;
});

/** `diffugen serve` run to its end (a refusal); the env is the box's plus `extra`, nothing inherited that matters. */
async function serveOnce(extra: Record<string, string>, args: string[] = []) {
  const command = diffugenCommand("serve", ...args);
  return execa(command.file, command.args, {
    cwd: box!.dir,
    env: box!.env({ PORT: "0", API_KEY: "", ALLOW_UNAUTHENTICATED: "", OLLAMA_GATEWAY_PORT: "", OLLAMA_GATEWAY_HOST: "", ...extra }),
    reject: false,
    timeout: 30_000,
  });
}

function expectRefusal(result: Awaited<ReturnType<typeof serveOnce>>, listener: string) {
  expect(result.exitCode, result.stderr).toBe(2);
  expect(result.stdout).not.toContain("listening");
  const stderr = result.stderr;
  expect(stderr.match(/refusing to listen/g)).toHaveLength(1);
  expect(stderr).toContain(`refusing to listen on ${listener} without an API key`);
  expect(stderr).toContain("openssl rand -hex 24");
  expect(stderr).toContain("=127.0.0.1");
  expect(stderr).toContain("ALLOW_UNAUTHENTICATED=true");
  // One message, not a crash.
  expect(stderr).not.toMatch(/\n\s+at /);
  expect(stderr.startsWith("diffugen: ")).toBe(true);
  // Refused before it became the GPU's owner.
  expect(fs.existsSync(path.join(box!.dir, "data", "gpu-owner.lock"))).toBe(false);
}

describe("diffugen serve on a non-loopback address", () => {
  it("without API_KEY: refuses, naming the three fixes (HOST, --host, and the gateway's own listener)", async () => {
    box = await startFakeBox("exposure");
    expectRefusal(await serveOnce({ HOST: "0.0.0.0" }), "0.0.0.0 (HOST)");
    expectRefusal(await serveOnce({ HOST: "127.0.0.1" }, ["--host", "192.168.1.20"]), "192.168.1.20 (HOST)");
    const gateway = await serveOnce({ HOST: "127.0.0.1", OLLAMA_GATEWAY_PORT: "0", OLLAMA_GATEWAY_HOST: "0.0.0.0" });
    expectRefusal(gateway, "0.0.0.0 (OLLAMA_GATEWAY_HOST)");
    expect(gateway.stderr).toContain("OLLAMA_GATEWAY_HOST=127.0.0.1");
    // From a .env file, as most users set it, the same.
    fs.writeFileSync(path.join(box.dir, ".env"), "HOST=0.0.0.0\n");
    const command = diffugenCommand("serve");
    const viaFile = await execa(command.file, command.args, { cwd: box.dir, env: { ...box.env({ PORT: "0", API_KEY: "", ALLOW_UNAUTHENTICATED: "" }), HOST: undefined }, reject: false, timeout: 30_000 });
    expectRefusal(viaFile, "0.0.0.0 (HOST)");
  });

  it("with ALLOW_UNAUTHENTICATED=true: starts, with a warning", async () => {
    box = await startFakeBox("exposure");
    serve = await startServe(box.env({ HOST: "0.0.0.0", PORT: "0", API_KEY: "", ALLOW_UNAUTHENTICATED: "true" }), box.dir);
    const port = new URL(serve.url).port;
    expect((await fetch(`http://127.0.0.1:${port}/v1/models`)).status).toBe(200);
    expect(serve.stderr().match(/warning: listening on 0\.0\.0\.0 \(HOST\) without an API key/g)).toHaveLength(1);
  });

  it("with API_KEY: starts without a warning; /health says only its status without the key", async () => {
    box = await startFakeBox("exposure");
    const key = "0123456789abcdef0123456789abcdef0123456789abcdef";
    serve = await startServe(box.env({ HOST: "0.0.0.0", PORT: "0", API_KEY: key, ALLOW_UNAUTHENTICATED: "" }), box.dir);
    const base = `http://127.0.0.1:${new URL(serve.url).port}`;
    expect(serve.stderr()).not.toContain("warning");
    const bare = (await (await fetch(`${base}/health`)).json()) as Record<string, unknown>;
    expect(Object.keys(bare)).toEqual(["status"]);
    const full = (await (await fetch(`${base}/health`, { headers: { Authorization: `Bearer ${key}` } })).json()) as Record<string, unknown>;
    expect(full).toHaveProperty("sd");
    expect((await fetch(`${base}/v1/models`)).status).toBe(401);
    expect((await fetch(`${base}/ollama/api/tags`)).status).toBe(401);
    // The key is never printed.
    expect(serve.stdout() + serve.stderr()).not.toContain(key);
  });

  it("loopback without a key (127.0.0.0/8) starts as before, quietly", async () => {
    box = await startFakeBox("exposure");
    serve = await startServe(box.env({ HOST: "127.0.0.2", PORT: "0", API_KEY: "", ALLOW_UNAUTHENTICATED: "" }), box.dir);
    expect(serve.url).toMatch(/^http:\/\/127\.0\.0\.2:\d+$/);
    expect((await fetch(`${serve.url}/v1/models`)).status).toBe(200);
    expect(serve.stderr()).not.toMatch(/warning|refusing/);
  });
});

describe("which addresses are loopback", () => {
  it("127.0.0.0/8, ::1 and localhost are; wildcards, LAN addresses and host names are not", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "localhost", "LOCALHOST"]) expect(isLoopbackHost(host), host).toBe(true);
    for (const host of ["0.0.0.0", "::", "[::]", "192.168.1.20", "10.0.0.1", "::ffff:192.168.1.2", "diffugen", "myhost.local", "localhost.example.com", "128.0.0.1", ""]) {
      expect(isLoopbackHost(host), host).toBe(false);
    }
  });

  it("a key, or ALLOW_UNAUTHENTICATED (with its warning), lets a non-loopback listener start", () => {
    const lan = [{ host: "0.0.0.0", variable: "HOST" }];
    expect(() => checkListenerSafety(lan, { apiKey: undefined, allowUnauthenticated: false })).toThrow(UnsafeListenerError);
    expect(checkListenerSafety(lan, { apiKey: "k", allowUnauthenticated: false })).toEqual({});
    expect(checkListenerSafety(lan, { apiKey: undefined, allowUnauthenticated: true }).warning).toMatch(/ALLOW_UNAUTHENTICATED=true/);
    expect(checkListenerSafety([{ host: "127.0.0.1", variable: "HOST" }], { apiKey: undefined, allowUnauthenticated: false })).toEqual({});
  });
});
