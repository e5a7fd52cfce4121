import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { toRunError } from "../../graphs/diffugen/run-error.js";
import { OllamaConnectionLostError, isConnectionLost, isUnreachable } from "../../src/llm/errors.js";
import { apiErrorFromRun, errorHeaders } from "../../src/server/errors.js";
import { readSpawns, readViolations } from "../fakes/fake-gpu.mjs";
import { parseSse, postJson, startServerStack, type ServerStack } from "./harness.js";

/**
 * Issue 13 #14: Ollama resets the connection (it crashed mid-request) while the LLM is being
 * unloaded. Nothing may be drawn (Ollama may still hold VRAM), and the client is told so:
 * 503 `llm_unavailable` with Retry-After, not a 500 `internal`. Unless nvidia-smi answers and
 * lists no process holding GPU memory: then the image is drawn, with a warning saying why.
 *
 * The fake Ollama resets connections only mid-stream of a chat, so a small proxy in front of
 * it resets /api/ps (the unload's first request, or every poll) while `resetPs` is on.
 */
interface ResettingProxy {
  url: string;
  target: string;
  resetPs: boolean;
  /** Start resetting /api/ps once a chat went through (with refine off: the unload call). */
  resetPsAfterChat: boolean;
  resets: number;
  close(): Promise<void>;
}

async function startResettingProxy(): Promise<ResettingProxy> {
  const proxy: ResettingProxy = { url: "", target: "", resetPs: false, resetPsAfterChat: false, resets: 0, close: async () => undefined };
  const server = http.createServer((req, res) => {
    if (proxy.resetPsAfterChat && req.method === "POST" && req.url === "/api/chat") proxy.resetPs = true;
    if (proxy.resetPs && req.method === "GET" && req.url?.startsWith("/api/ps")) {
      proxy.resets += 1;
      req.socket.resetAndDestroy();
      return;
    }
    const upstream = http.request(new URL(req.url ?? "/", proxy.target), { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return proxy;
}

/**
 * A fake nvidia-smi: `--query-gpu=memory.free` prints a number; `--query-compute-apps=...`
 * prints `apps` (one "pid, MiB" line per process; empty: none), or fails with `fail`.
 */
interface FakeNvidiaSmi {
  bin: string;
  apps(lines: string): void;
  fail(on: boolean): void;
}

let smiDir: string | undefined;
function fakeNvidiaSmi(): FakeNvidiaSmi {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fake-nvidia-smi-"));
  smiDir = dir;
  const bin = path.join(dir, "nvidia-smi");
  fs.writeFileSync(path.join(dir, "apps.txt"), "");
  fs.writeFileSync(
    bin,
    [
      "#!/bin/sh",
      `dir='${dir}'`,
      'case "$1" in',
      '  --query-compute-apps=pid,used_memory) [ -f "$dir/fail" ] && { echo "NVIDIA-SMI has failed" >&2; exit 9; }; cat "$dir/apps.txt" ;;',
      "  --query-gpu=memory.free) echo 7800 ;;",
      "  *) exit 2 ;;",
      "esac",
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  return {
    bin,
    apps: (lines) => fs.writeFileSync(path.join(dir, "apps.txt"), lines),
    fail: (on) => (on ? fs.writeFileSync(path.join(dir, "fail"), "") : fs.rmSync(path.join(dir, "fail"), { force: true })),
  };
}

let s: ServerStack | undefined;
let proxy: ResettingProxy | undefined;
afterEach(async () => {
  await s?.close();
  await proxy?.close();
  if (smiDir) fs.rmSync(smiDir, { recursive: true, force: true });
  s = undefined;
  proxy = undefined;
  smiDir = undefined;
});

async function stackBehindProxy(
  env: Record<string, string> = {},
  ollama: { resident?: string[] } = {},
): Promise<{ s: ServerStack; proxy: ResettingProxy }> {
  proxy = await startResettingProxy();
  s = await startServerStack({ env: { OLLAMA_BASE_URL: proxy.url, LOG_LEVEL: "silent", ...env }, ollama });
  proxy.target = s.stack.ollama.url;
  return { s, proxy };
}

const body = { prompt: "a fox", size: "64x64", steps: 2, refine: false };

describe("Ollama resets the connection during the unload", () => {
  it("503 llm_unavailable with Retry-After and a message that says what happened; nothing drawn", async () => {
    const { s, proxy } = await stackBehindProxy();
    proxy.resetPs = true;
    const res = await postJson(`${s.url}/v1/images/generations`, body);
    expect(res.status).toBe(503);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    // Once Ollama is back the same request works: the SDK may retry.
    expect(res.headers.get("x-should-retry")).toBeNull();
    const err = ((await res.json()) as { error: { message: string; type: string; code: string } }).error;
    expect(err).toMatchObject({ type: "server_error", code: "llm_unavailable" });
    expect(err.message).toMatch(/broke off the connection while unloading the LLM/);
    expect(err.message).toMatch(/UND_ERR_SOCKET|ECONNRESET/);
    expect(err.message).toMatch(/may still hold the LLM in VRAM/);
    expect(err.message).toMatch(/Check that Ollama is running/);
    expect(proxy.resets).toBeGreaterThan(0);
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);

    // The seed API says the same in its own shape; its stream too.
    const seed = await postJson(`${s.url}/generate`, { prompt: "a fox", width: 64, height: 64, steps: 2, refine: false });
    expect(seed.status).toBe(503);
    expect(seed.headers.get("retry-after")).not.toBeNull();
    expect(await seed.json()).toMatchObject({ success: false, code: "llm_unavailable" });
    const stream = await postJson(`${s.url}/generate/stream`, { prompt: "a fox", width: 64, height: 64, steps: 2, refine: false });
    const last = parseSse(await stream.text()).messages.at(-1)!;
    expect(last.event).toBe("error");
    expect(JSON.parse(last.data)).toMatchObject({ phase: "error", code: "llm_unavailable" });
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);

    // Ollama back: drawing works again.
    proxy.resetPs = false;
    await s.stack.deps.scheduler.whenSettled();
    const after = await postJson(`${s.url}/v1/images/generations`, body);
    expect(after.status).toBe(200);
    expect(readSpawns(s.stack.gpuDir)).toHaveLength(1);
  });

  it("polls reset until UNLOAD_TIMEOUT_S: llm_unavailable too, not a model that would not leave", async () => {
    const { s, proxy } = await stackBehindProxy({ UNLOAD_TIMEOUT_S: "0.5" });
    // The first /api/ps answers (the LLM is listed); every poll after the unload call is reset.
    const { ollama } = s.stack;
    // The first /api/ps answers (the LLM is listed) and the unload call is accepted, but the
    // LLM stays listed and every poll after it is reset: only the broken polls decide.
    ollama.configure({ unloadNeverCompletes: true });
    proxy.resetPsAfterChat = true;
    const res = await postJson(`${s.url}/v1/images/generations`, body);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: { code: "llm_unavailable" } });
    expect(res.headers.get("retry-after")).not.toBeNull();
    expect(proxy.resets).toBeGreaterThan(1);
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);
    proxy.resetPsAfterChat = false;
    proxy.resetPs = false;
    ollama.configure({ unloadNeverCompletes: false });
  });
});

describe("Ollama resets the connection during the unload, and nvidia-smi is asked", () => {
  it("no process in VRAM: drawn anyway, with a warning; a process listed or nvidia-smi failing: 503", async () => {
    const smi = fakeNvidiaSmi();
    // Ollama crashed holding nothing (the simulated GPU agrees with the fake nvidia-smi), and
    // LLM_RESTORE=none keeps it so after each image: nothing is loaded back through the proxy.
    const { s, proxy } = await stackBehindProxy({ NVIDIA_SMI: smi.bin, LLM_RESTORE: "none" }, { resident: [] });
    proxy.resetPs = true;

    // Another process holds GPU memory: nothing drawn, as without nvidia-smi.
    smi.apps("4321, 5120\n");
    const busy = await postJson(`${s.url}/v1/images/generations`, body);
    expect(busy.status).toBe(503);
    expect(busy.headers.get("retry-after")).not.toBeNull();
    expect(await busy.json()).toMatchObject({ error: { code: "llm_unavailable" } });
    await s.stack.deps.scheduler.whenSettled();

    // nvidia-smi fails: unknown is never free.
    smi.apps("");
    smi.fail(true);
    const failing = await postJson(`${s.url}/v1/images/generations`, body);
    expect(failing.status).toBe(503);
    expect(await failing.json()).toMatchObject({ error: { code: "llm_unavailable" } });
    await s.stack.deps.scheduler.whenSettled();
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);

    // nvidia-smi answers and lists no process: the picture is drawn, and the client is told why.
    smi.fail(false);
    const resetsBefore = proxy.resets;
    const drawn = await postJson(`${s.url}/v1/images/generations`, body);
    expect(drawn.status).toBe(200);
    expect(((await drawn.json()) as { data: unknown[] }).data).toHaveLength(1);
    expect(proxy.resets).toBeGreaterThan(resetsBefore);
    expect(readSpawns(s.stack.gpuDir)).toHaveLength(1);
    await s.stack.deps.scheduler.whenSettled();

    const seed = await postJson(`${s.url}/generate`, { prompt: "a fox", width: 64, height: 64, steps: 2, refine: false });
    expect(seed.status).toBe(200);
    const answer = (await seed.json()) as { success: boolean; warnings: string[] };
    expect(answer.success).toBe(true);
    expect(answer.warnings).toHaveLength(1);
    const warning = answer.warnings[0]!;
    expect(warning).toMatch(/broke off the connection while unloading the LLM/);
    expect(warning).toMatch(/UND_ERR_SOCKET|ECONNRESET/);
    expect(warning).toMatch(/nvidia-smi shows no process holding GPU memory, so the picture is drawn anyway/);
    expect(warning).toMatch(/Check that Ollama is running/);
    await s.stack.deps.scheduler.whenSettled();

    // The stream shows it as a warning event.
    const stream = await postJson(`${s.url}/generate/stream`, { prompt: "a fox", width: 64, height: 64, steps: 2, refine: false });
    const messages = parseSse(await stream.text()).messages;
    expect(messages.some((m) => m.data.includes("so the picture is drawn anyway"))).toBe(true);
    expect(messages.at(-1)!.event).not.toBe("error");

    expect(readSpawns(s.stack.gpuDir)).toHaveLength(3);
    expect(s.stack.llmLog.some((l) => l.level === "warn" && l.message.includes("drawn anyway"))).toBe(true);
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });
});

describe("a broken-off connection, classified", () => {
  const socketError = (code: string) => new TypeError("fetch failed", { cause: Object.assign(new Error("other side closed"), { code }) });

  it("UND_ERR_SOCKET and ECONNRESET are a lost connection, never 'unreachable'; refused is not lost", () => {
    for (const code of ["UND_ERR_SOCKET", "ECONNRESET"]) {
      expect(isConnectionLost(socketError(code)), code).toBe(true);
      expect(isUnreachable(socketError(code)), code).toBe(false);
    }
    expect(isConnectionLost(socketError("ECONNREFUSED"))).toBe(false);
  });

  it("→ llm_unavailable → 503, retryable, with Retry-After", () => {
    const lost = new OllamaConnectionLostError("http://ollama:11434", "unloading the LLM", { cause: socketError("UND_ERR_SOCKET") });
    expect(lost.message).toContain("(UND_ERR_SOCKET: fetch failed)");
    const runError = toRunError(lost, "unload");
    expect(runError.code).toBe("llm_unavailable");
    const api = apiErrorFromRun(runError);
    expect(api.status).toBe(503);
    const headers = errorHeaders(api);
    expect(Number(headers["Retry-After"])).toBeGreaterThanOrEqual(1);
    expect(headers["x-should-retry"]).toBeUndefined();
  });
});
