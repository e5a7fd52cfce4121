/**
 * One sd-server process and its traps, against the sd-server double (byte-faithful to
 * ../shared/fixtures/sd-server): it prints `listening on:` before it binds, exits 0 when
 * the port is taken, exits 1 before listening when the model cannot be opened, and has no
 * SIGTERM handler.
 */
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SdProcessError } from "../../../src/diffusion/index.js";
import { SdServerProcess, type SdServerLaunch, type SdServerState } from "../../../src/diffusion/sd-server/sd-server-process.js";
import { isAlive } from "../../fakes/fake-gpu.mjs";
import { repoRoot } from "../../helpers/stack.js";
import { freePort } from "../../helpers/ports.js";

const sdServerDouble = path.join(repoRoot, "tests/fakes/sd-server.mjs");
const cleanup: (() => Promise<unknown> | void)[] = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

function box(): { dir: string; model: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sd-server-process-"));
  cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const model = path.join(dir, "v1-5-pruned-emaonly.safetensors");
  fs.writeFileSync(model, "");
  return { dir, model };
}

function launchFor(dir: string, model: string, more: Partial<SdServerLaunch> = {}): SdServerLaunch {
  return { bin: sdServerDouble, args: ["-m", model], model: "sd15", modelFile: model, cwd: dir, env: { FAKE_SD_LISTEN_MS: "5" }, ...more };
}

async function started(launch: SdServerLaunch, states?: SdServerState[]): Promise<SdServerProcess> {
  const server = await SdServerProcess.start(launch, states ? (state) => states.push(state) : undefined);
  cleanup.push(() => server.stop());
  return server;
}

describe("an sd-server process", () => {
  it("goes stopped → starting → ready → stopping → stopped, and stop() resolves once the pid is gone", async () => {
    const { dir, model } = box();
    const states: SdServerState[] = [];
    const server = await started(launchFor(dir, model), states);
    expect(server.state).toBe("ready");
    expect(server.pid).toBeGreaterThan(0);
    const exit = await server.stop();
    expect(isAlive(server.pid!)).toBe(false);
    // No SIGTERM handler: it dies by the signal.
    expect(exit).toEqual({ code: undefined, signal: "SIGTERM" });
    expect(states).toEqual(["starting", "ready", "stopping", "stopped"]);
  });

  it("is tried on another port when the one picked is taken: it printed 'listening on' and exited 0", async () => {
    const holder = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    cleanup.push(() => new Promise((resolve) => holder.close(resolve)));
    const taken = (holder.address() as net.AddressInfo).port;
    const picked: number[] = [];
    const { dir, model } = box();
    const server = await started(
      launchFor(dir, model, {
        pickPort: async () => {
          const port = picked.length === 0 ? taken : await freePort();
          picked.push(port);
          return port;
        },
      }),
    );
    expect(picked).toHaveLength(2);
    expect(picked[0]).toBe(taken);
    expect(server.port).toBe(picked[1]);
    expect(server.state).toBe("ready");
  });

  it("says which model file it could not open when it exits 1 before listening", async () => {
    const { dir } = box();
    const missing = path.join(dir, "nowhere.safetensors");
    const error = await SdServerProcess.start(launchFor(dir, missing)).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(SdProcessError);
    expect((error as SdProcessError).exitCode).toBe(1);
    expect((error as Error).message).toContain("sd-server exited with code 1");
    expect((error as Error).message).toContain(missing);
  });

  it("gives up on start when its caller is cancelled, and leaves no process", async () => {
    const { dir, model } = box();
    const controller = new AbortController();
    const pending = SdServerProcess.start(launchFor(dir, model, { env: { FAKE_SD_LISTEN_MS: "2000" }, signal: controller.signal }));
    setTimeout(() => controller.abort(new Error("client went away")), 100);
    const error = await pending.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect((error as Error).name).toBe("SdAbortedError");
  });
});

