import { describe, expect, it } from "vitest";
import { GpuInvariantError } from "../../../src/gpu/index.js";
import { LlmResidencyState } from "../../../src/gpu/llm-state.js";

describe("LlmResidencyState", () => {
  it("walks unload and reload, each transition from the state it expects", () => {
    let t = 0;
    const llm = new LlmResidencyState(() => t);
    expect(llm.state).toBe("unknown");
    llm.beginUnload();
    expect(llm.busy).toBe(true);
    t = 5;
    llm.unloaded();
    expect(llm.confirmedOut).toBe(true);
    expect(llm.needsReload).toBe(true);
    llm.beginLoad();
    llm.loaded();
    expect(llm.snapshot()).toEqual({ state: "resident", since: 5, error: undefined });
  });

  it("remembers why it failed until the next transition", () => {
    const llm = new LlmResidencyState(() => 0);
    llm.beginUnload();
    llm.unloadFailed("still resident");
    expect(llm.snapshot()).toMatchObject({ state: "failed", error: { during: "unload", message: "still resident" } });
    expect(llm.needsReload).toBe(true);
    llm.beginLoad();
    expect(llm.snapshot().error).toBeUndefined();
    llm.loadFailed("not found");
    expect(llm.snapshot()).toMatchObject({ state: "failed", error: { during: "reload" } });
    llm.beginUnload(); // a failed reload may have left part of it in VRAM
    expect(llm.state).toBe("unloading");
  });

  it("refuses transitions from the wrong state", () => {
    const llm = new LlmResidencyState(() => 0);
    expect(() => llm.unloaded()).toThrow(GpuInvariantError);
    expect(() => llm.beginLoad()).toThrow(/unknown -> loading/);
    llm.beginUnload();
    expect(() => llm.beginUnload()).toThrow(GpuInvariantError);
    expect(() => llm.beginLoad()).toThrow(GpuInvariantError);
  });
});
