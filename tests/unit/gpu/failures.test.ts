import { describe, expect, it } from "vitest";
import { flush, Harness } from "./harness.js";
import { UnloadTimeoutError } from "./fake-llm-residency.js";

describe("GpuScheduler: when Ollama misbehaves", () => {
  it("rejects the diffusion job with the unload's own error, never starts diffusion, reloads the LLM", async () => {
    const h = new Harness();
    h.fake.failNextUnloads = 1;
    const error = await h.acquire("diffusion", "d1").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnloadTimeoutError);
    expect(h.fake.heldLeases("diffusion")).toBe(0);

    await h.scheduler.whenSettled();
    expect(h.fake.calls).toEqual(["unload", "reload"]);
    expect(h.scheduler.state()).toMatchObject({ llm: "resident", gpu: { kind: "idle" }, queue: [] });
    const stats = h.scheduler.stats();
    expect(stats.failures).toMatchObject({ unloads: 1, reloads: 0, last: { during: "unload" } });
    expect(stats.failures.last?.message).toContain("still resident");
    expect(stats.unloads.count).toBe(0);
    expect(stats.grants.diffusion).toBe(0);
    await flush();
    expect(h.eventTypes("d1")).toEqual(["queued", "unloading_llm", "llm_unload_failed"]);
    expect(h.fake.violations).toEqual([]);
  });

  it("moves on after a failed unload: the next diffusion job makes its own attempt", async () => {
    const h = new Harness();
    h.fake.holdUnloads = true;
    const d1 = h.acquire("diffusion", "d1");
    const d2 = h.acquire("diffusion", "d2");
    const chat = h.acquire("llm", "chat");
    await flush();
    h.fake.failUnload();
    await expect(d1).rejects.toMatchObject({ code: "LLM_UNLOAD_TIMEOUT" });

    // The LLM is put back, and the chat that was waiting gets it before d2's unload.
    const chatLease = await chat;
    expect(h.fake.calls).toEqual(["unload", "reload"]);
    await h.release(chatLease);
    await flush();
    expect(h.fake.unloadPending).toBe(true);
    h.fake.finishUnload();
    await h.release(await d2);
    expect(h.fake.calls).toEqual(["unload", "reload", "unload", "reload"]);
    expect(h.grants).toEqual(["chat", "d2"]);
    expect(h.fake.violations).toEqual([]);
  });

  it("records a failed reload, says so in the state, and reloads before the next LLM lease", async () => {
    const h = new Harness();
    h.fake.failNextReloads = 1;
    const lease = await h.acquire("diffusion", "d1");
    const outcome = await h.release(lease);
    expect(outcome).toEqual({ kind: "llm_reload_failed", error: "model 'qwen2.5:3b' not found" });
    expect(h.scheduler.state()).toMatchObject({ llm: "failed", gpu: { kind: "idle" } });
    const stats = h.scheduler.stats();
    expect(stats.llm).toMatchObject({ state: "failed", error: { during: "reload", message: "model 'qwen2.5:3b' not found" } });
    expect(stats.failures).toMatchObject({ unloads: 0, reloads: 1, last: { during: "reload" } });
    expect(stats.reloads.count).toBe(0);
    await flush();
    expect(h.eventTypes("d1").slice(-2)).toEqual(["reloading_llm", "llm_reload_failed"]);

    const chat = await h.acquire("llm", "chat");
    expect(h.fake.calls).toEqual(["unload", "reload", "reload"]);
    expect(h.scheduler.state().llm).toBe("resident");
    await flush();
    expect(h.eventTypes("chat")).toEqual(["queued", "reloading_llm", "llm_reloaded", "granted"]);
    await h.release(chat);
    expect(h.fake.violations).toEqual([]);
  });

  it("still grants LLM leases when the retry fails too, and retries for the next newcomer", async () => {
    const h = new Harness();
    h.fake.failNextReloads = 2;
    await h.release(await h.acquire("diffusion", "d1"));
    const c1 = await h.acquire("llm", "c1"); // retry fails: granted anyway, its own call will fail
    expect(h.scheduler.state()).toMatchObject({ llm: "failed", gpu: { kind: "llm", leases: 1 } });
    const c2 = await h.acquire("llm", "c2"); // the next LLM acquire tries again (while c1 holds)
    expect(h.fake.calls).toEqual(["unload", "reload", "reload", "reload"]);
    expect(h.scheduler.state()).toMatchObject({ llm: "resident", gpu: { kind: "llm", leases: 2 } });
    await h.release(c1);
    await h.release(c2);
    expect(h.scheduler.stats().failures.reloads).toBe(2);
    expect(h.fake.violations).toEqual([]);
  });

  it("unloads before diffusion after a failed reload (the model may be partly loaded)", async () => {
    const h = new Harness();
    h.fake.failNextReloads = 1;
    await h.release(await h.acquire("diffusion", "d1"));
    expect(h.scheduler.state().llm).toBe("failed");
    await h.release(await h.acquire("diffusion", "d2"));
    expect(h.fake.calls).toEqual(["unload", "reload", "unload", "reload"]);
    expect(h.scheduler.state().llm).toBe("resident");
  });

  it("lets diffusion run when Ollama is down, and records the reload it could not do", async () => {
    const h = new Harness();
    h.fake.ollamaDown = true;
    const lease = await h.acquire("diffusion", "d1");
    await flush();
    expect(h.events("d1").find((e) => e.type === "llm_unloaded")).toMatchObject({ reachable: false, models: [] });
    expect(await h.release(lease)).toMatchObject({ kind: "llm_reload_failed", error: expect.stringContaining("not reachable") });
    expect(h.scheduler.state().llm).toBe("failed");

    h.fake.ollamaDown = false;
    const chat = await h.acquire("llm", "chat");
    expect(h.scheduler.state().llm).toBe("resident");
    await h.release(chat);
  });

  it("treats a control plane that throws synchronously like a rejection", async () => {
    const h = new Harness();
    h.fake.unloadAll = () => {
      throw new Error("boom");
    };
    await expect(h.acquire("diffusion", "d1")).rejects.toThrow("boom");
    await h.scheduler.whenSettled();
    expect(h.scheduler.state()).toMatchObject({ llm: "resident", gpu: { kind: "idle" } });
  });
});
