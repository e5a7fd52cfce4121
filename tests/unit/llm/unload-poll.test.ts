import { describe, expect, it } from "vitest";
import { defaultUnloadPoll, UnloadPollSchedule } from "../../../src/llm/unload-poll.js";

describe("UnloadPollSchedule", () => {
  it("polls every fastMs while the drop is expected, then backs off from initialMs doubling to maxMs", () => {
    let now = 1_000;
    const schedule = new UnloadPollSchedule({ fastMs: 5, fastForMs: 300, initialMs: 50, maxMs: 100 }, () => now);
    const pauses: number[] = [];
    while (now < 1_000 + 700) {
      const pause = schedule.nextPauseMs();
      pauses.push(pause);
      now += pause + 1; // each poll's round trip
    }
    const fast = pauses.filter((p) => p === 5).length;
    expect(fast).toBe(Math.ceil(300 / 6));
    expect(pauses.slice(fast)).toEqual([50, 100, 100, 100, 100]);
  });

  it("fastForMs 0: the back-off alone, from the first pause", () => {
    const schedule = new UnloadPollSchedule({ ...defaultUnloadPoll, fastForMs: 0 }, () => 0);
    expect([1, 2, 3, 4].map(() => schedule.nextPauseMs())).toEqual([50, 100, 100, 100]);
  });

  it("the product's default: a few ms for the first half second", () => {
    expect(defaultUnloadPoll.fastMs).toBeLessThanOrEqual(5);
    expect(defaultUnloadPoll.fastForMs).toBe(500);
  });
});
