import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { cliCommand, packageRoot } from "../../src/cli/cli-command.js";
import { root } from "./helpers/diffugen-command.js";

/** The command the CLI's hints name: the one that works from where the user is. */
describe("cliCommand", () => {
  const bin = path.join(root, "bin", "diffugen.js");

  it("finds the checkout", () => {
    expect(packageRoot()).toBe(root);
  });

  it("`diffugen` when started through a diffugen on PATH (npm link, npm install -g .)", () => {
    const env = { PATH: ["/usr/bin", "/usr/local/bin"].join(path.delimiter) };
    expect(cliCommand({ argv1: "/usr/local/bin/diffugen", env, cwd: os.tmpdir(), root })).toBe("diffugen");
  });

  it("not `diffugen` for a node_modules/.bin on PATH (npx, npm scripts), nor for a diffugen outside PATH", () => {
    const dotBin = path.join(root, "node_modules", ".bin");
    expect(cliCommand({ argv1: path.join(dotBin, "diffugen"), env: { PATH: dotBin }, cwd: root, root })).toBe("npx diffugen");
    expect(cliCommand({ argv1: "/opt/elsewhere/diffugen", env: { PATH: "/usr/bin" }, cwd: os.tmpdir(), root })).toBe(`node ${bin}`);
  });

  it("`npx diffugen` in the checkout (npm start, node bin/diffugen.js), at its root or below", () => {
    expect(cliCommand({ argv1: bin, env: { PATH: "/usr/bin" }, cwd: root, root })).toBe("npx diffugen");
    expect(cliCommand({ argv1: bin, env: { PATH: "/usr/bin" }, cwd: path.join(root, "src"), root })).toBe("npx diffugen");
  });

  it("else the launcher by its absolute path, which works from anywhere", () => {
    expect(cliCommand({ argv1: bin, env: { PATH: "/usr/bin" }, cwd: os.tmpdir(), root })).toBe(`node ${bin}`);
    expect(cliCommand({ argv1: undefined, env: {}, cwd: "/", root })).toBe(`node ${bin}`);
  });
});
