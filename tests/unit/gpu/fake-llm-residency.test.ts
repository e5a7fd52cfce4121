import { describe, expect, it } from "vitest";
import { FakeLlmResidency } from "./fake-llm-residency.js";

// The stand-in is what the scheduler's tests trust to spot a broken invariant: check it does.
describe("FakeLlmResidency", () => {
  it("flags diffusion while the LLM is resident, and LLM work during diffusion", async () => {
    const fake = new FakeLlmResidency();
    fake.granted("diffusion", "d1");
    fake.granted("llm", "c1");
    expect(fake.violations).toEqual([
      "diffusion lease for d1 while the LLM is resident",
      "LLM lease for c1 while diffusion runs",
    ]);
  });

  it("flags an LLM lease while the LLM is out, and an unload under an LLM lease", async () => {
    const fake = new FakeLlmResidency();
    await fake.unloadAll();
    fake.granted("llm", "c1");
    await fake.unloadAll();
    expect(fake.violations).toEqual(["LLM lease for c1 while the LLM is out", "unload while an LLM lease is held"]);
  });

  it("flags a reload during diffusion and overlapping calls", async () => {
    const fake = new FakeLlmResidency({ resident: false });
    fake.granted("diffusion", "d1");
    const a = fake.reload();
    const b = fake.unloadAll();
    await Promise.all([a, b]);
    expect(fake.violations).toEqual([
      "reload while a diffusion lease is held",
      "unload while reload is in flight",
      "unload while a diffusion lease is held",
    ]);
  });
});
