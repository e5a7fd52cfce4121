import { describe, expect, it } from "vitest";
import { graphRunStream } from "../../../src/server/format/graph-stream.js";
import { framesOf, sequence } from "./sequences.js";

describe("the raw graph stream, over a recorded job", () => {
  it("every chunk untouched as event: <mode>, counted (no job ids), then end with the outcome once the run is over", async () => {
    const recorded = sequence("graph");
    const { frames, imagesRead } = await framesOf(recorded, graphRunStream("job-1"));
    const chunks = recorded.events.flatMap((e) => (e.type === "chunk" ? [{ event: e.mode, data: e.chunk }] : []));
    expect(chunks.length).toBeGreaterThan(10);
    expect(frames.slice(0, -1)).toEqual(chunks);
    expect(frames.at(-1)).toEqual({ event: "end", data: { jobId: "job-1", outcome: recorded.finished.outcome } });
    // The reload comes after the answer: the graph stream shows it.
    const outcomeAt = recorded.events.findIndex((e) => e.type === "outcome");
    expect(recorded.events.slice(outcomeAt).some((e) => e.type === "chunk")).toBe(true);
    expect(frames.filter((f) => f.event === "updates").map((f) => Object.keys(f.data as object)[0])).toEqual(["refine", "unload", "diffuse", "reload"]);
    expect(imagesRead).toBe(0);
  });

  it("a job without chunks (stream modes not asked) still ends with end; a break says error, then end with no outcome", async () => {
    const { frames } = await framesOf(sequence("success"), graphRunStream("job-2"));
    expect(frames).toEqual([{ event: "end", data: { jobId: "job-2", outcome: sequence("success").finished.outcome } }]);
    expect(graphRunStream("job-3").failure(new Error("boom"))).toEqual([
      { event: "error", data: { error: "boom" } },
      { event: "end", data: { jobId: "job-3", outcome: null } },
    ]);
  });
});
