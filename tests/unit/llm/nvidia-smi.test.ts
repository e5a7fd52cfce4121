import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseComputeApps, readComputeApps } from "../../../src/llm/nvidia-smi.js";

/**
 * Issue 13 #14: "VRAM free" after Ollama broke off the unload means nvidia-smi answered and
 * listed no process holding GPU memory. Anything else (a process, a message, a failure, no
 * tool) is never taken for free.
 */
describe("parseComputeApps", () => {
  it("blank output: no process", () => {
    expect(parseComputeApps("")).toEqual([]);
    expect(parseComputeApps("\n  \n")).toEqual([]);
  });

  it("one line per process: pid and MiB; [N/A] memory is still a process", () => {
    expect(parseComputeApps("4321, 5120\n987, 312.5\n")).toEqual([
      { pid: 4321, usedMemoryMiB: 5120 },
      { pid: 987, usedMemoryMiB: 313 },
    ]);
    expect(parseComputeApps("4321, [N/A]")).toEqual([{ pid: 4321, usedMemoryMiB: undefined }]);
    expect(parseComputeApps("4321, [Not Supported]\n")).toEqual([{ pid: 4321, usedMemoryMiB: undefined }]);
  });

  it("anything else is unknown, never 'no process'", () => {
    expect(parseComputeApps("No devices were found")).toBeUndefined();
    expect(parseComputeApps("No running processes found")).toBeUndefined();
    expect(parseComputeApps("7421")).toBeUndefined();
    expect(parseComputeApps("4321, 5120\ngarbage")).toBeUndefined();
  });
});

describe("readComputeApps", () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "nvidia-smi-"));
  });
  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** A fake nvidia-smi that logs its argv and runs `body`. */
  function smi(body: string): string {
    const bin = path.join(tmp, "nvidia-smi");
    fs.writeFileSync(bin, `#!/bin/sh\necho "$@" > "${tmp}/argv"\n${body}\n`, { mode: 0o755 });
    return bin;
  }

  it("asks for pid,used_memory as bare CSV, and reads an empty answer as no process", async () => {
    expect(await readComputeApps(smi("exit 0"))).toEqual([]);
    expect(fs.readFileSync(path.join(tmp, "argv"), "utf8").trim()).toBe("--query-compute-apps=pid,used_memory --format=csv,noheader,nounits");
  });

  it("lists the processes it prints", async () => {
    expect(await readComputeApps(smi('echo "1234, 2048"'))).toEqual([{ pid: 1234, usedMemoryMiB: 2048 }]);
  });

  it("a failing tool, a missing one, or one that hangs: unknown", async () => {
    expect(await readComputeApps(smi('echo "NVIDIA-SMI has failed" >&2; exit 9'))).toBeUndefined();
    expect(await readComputeApps(path.join(tmp, "absent"))).toBeUndefined();
    const started = Date.now();
    expect(await readComputeApps(smi("exec sleep 5"), { timeoutMs: 200 })).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("rejects when the signal aborts", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error("stop")), 100);
    await expect(readComputeApps(smi("exec sleep 5"), { signal: ac.signal })).rejects.toThrow("stop");
  });
});
