import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { chooseEnvFile, loadEnvFile } from "../../src/cli/env-file.js";
import { diffugenCommand } from "./helpers/diffugen-command.js";
import { closedPort } from "../helpers/ports.js";

/**
 * `.env` in the working directory is read at start-up (README: `cp .env.example .env`), the
 * real environment wins over it, and `--env-file PATH` picks another file.
 * `diffugen status` shows what it read: the server address (HOST, PORT) and MODELS_DIR.
 */

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-envfile-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));


async function run(args: string[], env: Record<string, string> = {}) {
  const command = diffugenCommand(...args);
  return execa(command.file, command.args, {
    cwd: dir,
    reject: false,
    extendEnv: false,
    env: { PATH: path.join(dir, "no-bin"), DATA_DIR: path.join(dir, "data"), OLLAMA_BASE_URL: `http://127.0.0.1:${await closedPort()}`, ...env },
  });
}

describe("the settings file", () => {
  it("reads .env from the working directory; a variable set in the environment wins over it", async () => {
    const port = await closedPort();
    fs.writeFileSync(path.join(dir, ".env"), `# as in .env.example\nPORT=${port}\nMODELS_DIR=./models-from-dotenv\n`);
    const result = await run(["status"]);
    expect(result.stderr).toBe("");
    expect(result.stdout).toContain(`No DiffuGen server answers at http://127.0.0.1:${port}`);
    expect(result.stdout).toContain(`Models in ${path.join(dir, "models-from-dotenv")}`);

    const other = await closedPort();
    const overridden = await run(["status"], { PORT: String(other), MODELS_DIR: path.join(dir, "real-models") });
    expect(overridden.stdout).toContain(`No DiffuGen server answers at http://127.0.0.1:${other}`);
    expect(overridden.stdout).toContain(`Models in ${path.join(dir, "real-models")}`);
  });

  it("--env-file PATH reads that file instead (before or after the command); no .env at all is fine", async () => {
    const port = await closedPort();
    fs.writeFileSync(path.join(dir, "box.env"), `PORT=${port}\n`);
    const before = await run(["--env-file", "box.env", "status"]);
    expect(before.stdout).toContain(`No DiffuGen server answers at http://127.0.0.1:${port}`);
    const after = await run(["status", `--env-file=${path.join(dir, "box.env")}`]);
    expect(after.stdout).toContain(`No DiffuGen server answers at http://127.0.0.1:${port}`);

    const none = await run(["status"]);
    expect(none.stderr).toBe("");
    expect(none.stdout).toContain("No DiffuGen server answers at http://127.0.0.1:5199");
  });

  it("a missing --env-file is a usage error: nothing runs", async () => {
    const result = await run(["--env-file", "nope.env", "status"]);
    expect(result.stdout).toBe("");
    // Node itself looks for a file named by --env-file anywhere on its command line, after the
    // script too (nodejs/node#54232), and stops first: exit 9, "node: nope.env: not found".
    // Where it does not, DiffuGen refuses it: exit 2.
    if (result.exitCode === 9) expect(result.stderr).toContain("node: nope.env: not found");
    else {
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toContain(`diffugen: --env-file: no such file: ${path.join(dir, "nope.env")}`);
    }
  });

  it("loadEnvFile: a missing --env-file is refused with its path (what diffugen prints, exit 2)", () => {
    expect(loadEnvFile(["--env-file", "nope.env", "status"], dir)).toBe(`--env-file: no such file: ${path.join(dir, "nope.env")}`);
    expect(loadEnvFile(["status"], dir)).toBeUndefined();
  });

  it("chooseEnvFile: --env-file wins, stops at --, else ./.env when present", () => {
    expect(chooseEnvFile(["serve", "--env-file", "a.env"], "/x")).toEqual({ file: "/x/a.env", explicit: true });
    expect(chooseEnvFile(["--env-file"], "/x").error).toContain("needs a file path");
    expect(chooseEnvFile(["generate", "--", "--env-file", "a.env"], dir)).toEqual({ file: undefined, explicit: false });
  });
});
