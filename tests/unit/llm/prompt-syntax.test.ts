import { describe, expect, it } from "vitest";
import { looksLikeDrawRequest } from "../../../src/llm/draw-intent.js";
import { findLoraTags, findWeightedSpans, keepsSubject, loraName, restoreUserSyntax, tidyPrompt } from "../../../src/llm/prompt-syntax.js";

describe("prompt syntax", () => {
  it("finds LoRA tags and weighted spans", () => {
    const text = "a ((cat:1.2)) on [grass], <lora:my lora_v2:0.8> (sharp) <lora:plain>";
    expect(findLoraTags(text)).toEqual(["<lora:my lora_v2:0.8>", "<lora:plain>"]);
    expect(findLoraTags(text).map(loraName)).toEqual(["my lora_v2", "plain"]);
    expect(findWeightedSpans(text)).toEqual(["((cat:1.2))", "[grass]", "(sharp)"]);
  });

  it("puts a stripped weight back in place and appends what is missing", () => {
    const fixed = restoreUserSyntax("a fluffy Cat on green grass, detailed", {
      loraFrom: ["a (cat:1.2) on [grass] <lora:fluffy:0.6>"],
      emphasisFrom: "a (cat:1.2) on [grass] <lora:fluffy:0.6>",
    });
    expect(fixed.text).toBe("a fluffy (cat:1.2) on green [grass], detailed, <lora:fluffy:0.6>");
  });

  it("tidies labels, quotes and stray commas", () => {
    expect(tidyPrompt('Prompt: "a cat,  , on a roof ,"')).toBe("a cat, on a roof");
  });

  it("checks the subject survived, by stem", () => {
    expect(keepsSubject("two cats sleeping", "a cat")).toBe(true);
    expect(keepsSubject("a dark, moody lighthouse", "make it darker")).toBe(true);
    expect(keepsSubject("a lighthouse", "a red fox")).toBe(false);
    expect(keepsSubject("a lighthouse at night", "now at dusk", "a lighthouse at sunset")).toBe(true);
    expect(keepsSubject("anything", "draw it")).toBe(true);
  });
});

describe("draw intent heuristic", () => {
  it.each([
    ["draw a cat", true],
    ["Can you paint me a sunset?", true],
    ["generate an image of a castle", true],
    ["a photo of a dog on the beach", true],
    ["make me a picture with dragons", true],
    ["/imagine a city at night", true],
    ["hello there", false],
    ["what is a picture of the day?", false],
    ["thanks, that looks great", false],
  ])("%s → %s", (text, expected) => {
    expect(looksLikeDrawRequest(text)).toBe(expected);
  });

  it("treats changes as drawing only after a picture", () => {
    expect(looksLikeDrawRequest("make it darker")).toBe(false);
    expect(looksLikeDrawRequest("make it darker", { hasPreviousPicture: true })).toBe(true);
    expect(looksLikeDrawRequest("now at night", { hasPreviousPicture: true })).toBe(true);
  });
});
