import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { repoRoot } from "../helpers/stack.js";

/**
 * docker-compose.yml is safe by default (issue 16): it needs DIFFUGEN_API_KEY from the user
 * (compose fails with a message without it, and generates nothing), gives that one key to
 * DiffuGen and to every Open WebUI connection to it, publishes DiffuGen on 127.0.0.1 only,
 * and Ollama not at all. Checked with `docker-compose config` when it is installed (it
 * needs no Docker daemon), on a copy of the file in a temp folder, so no .env of the
 * checkout is read.
 */

const compose = (() => {
  try {
    execFileSync("docker-compose", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-compose-"));
  fs.copyFileSync(path.join(repoRoot, "docker-compose.yml"), path.join(dir, "docker-compose.yml"));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function config(env: Record<string, string>, ...args: string[]) {
  return execa("docker-compose", ["config", ...args], { cwd: dir, env: { PATH: process.env.PATH ?? "", HOME: dir, ...env }, extendEnv: false, reject: false, timeout: 60_000 });
}

describe.skipIf(!compose)("docker-compose config", () => {
  it("fails without DIFFUGEN_API_KEY, saying where to set it", async () => {
    const result = await config({}, "-q");
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain("set it in .env");
  });

  it("passes with it (from the environment or .env), and wires that key everywhere, 5199 on loopback, Ollama unpublished", async () => {
    const key = "5f0c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a";
    expect((await config({ DIFFUGEN_API_KEY: key }, "-q")).exitCode).toBe(0);
    fs.writeFileSync(path.join(dir, ".env"), `DIFFUGEN_API_KEY=${key}\n`);
    const result = await config({});
    expect(result.exitCode, result.stderr).toBe(0);
    const text = result.stdout;
    // DiffuGen's own key, and Open WebUI's OpenAI, image, image-edit and Ollama connections.
    for (const variable of ["API_KEY", "OPENAI_API_KEYS", "IMAGES_OPENAI_API_KEY", "IMAGES_EDIT_OPENAI_API_KEY"]) {
      expect(text, variable).toMatch(new RegExp(`\\n\\s+${variable}: ${key}\\n`));
    }
    expect(text).toContain(`OLLAMA_API_CONFIGS: '{"0": {"key": "${key}"}}'`);
    expect(text).toContain("OLLAMA_BASE_URLS: http://diffugen:5199/ollama");

    const services = servicesOf(text);
    expect(services.diffugen).toMatch(/\n {4}ports:\n {4}- 127\.0\.0\.1:5199:5199\/tcp\n/);
    expect(services.diffugen).not.toMatch(/published: 5199|- 5199:5199/);
    expect(services.ollama).not.toMatch(/\n {4}ports:/);
  });
});

/** `services:` split by service (docker-compose config prints them sorted, indented by 2). */
function servicesOf(text: string): Record<string, string> {
  const body = `\n${text}`.split(/\nservices:\n/)[1]?.split(/\n\S/)[0] ?? "";
  const out: Record<string, string> = {};
  for (const block of body.split(/\n(?= {2}\S)/)) {
    const name = /^ {2}([\w-]+):/.exec(block)?.[1];
    if (name) out[name] = `${block}\n`;
  }
  return out;
}
