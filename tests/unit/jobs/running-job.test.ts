import { describe, expect, it } from "vitest";
import type { GenerationParams } from "../../../src/diffusion/index.js";
import type { ProgressEvent } from "../../../src/events/progress-event.js";
import { JobJournal } from "../../../src/jobs/job-journal.js";
import { JobStore } from "../../../src/jobs/job-store.js";
import { RunningJob } from "../../../src/jobs/running-job.js";

/**
 * When a run's answer is known. The client of an image job waits for it, so it is settled
 * the moment the last image is announced, not one LangGraph step later when `diffuse`'s
 * state update arrives (npm run bench, orchestration).
 */

const params = { batchCount: 2, width: 64, height: 64, steps: 4, seed: 7, prompt: "a fox", negativePrompt: "" } as unknown as GenerationParams;

function image(index: number): ProgressEvent {
  return { kind: "image", phase: "saving", progress: 99, message: `Image ${index + 1}/2 ready`, at: Date.now(), path: `/out/x-${index}.png`, seed: 7 + index, width: 64, height: 64, index };
}

/** A graph stream the test drives chunk by chunk. */
function drivenStream() {
  const queue: ([string, unknown] | "end")[] = [];
  let wake: (() => void) | undefined;
  const push = (chunk: [string, unknown] | "end") => {
    queue.push(chunk);
    wake?.();
  };
  async function* stream(): AsyncGenerator<[string, unknown]> {
    for (;;) {
      while (queue.length === 0) await new Promise<void>((r) => (wake = r));
      const next = queue.shift()!;
      if (next === "end") return;
      yield next;
    }
  }
  return { push, stream };
}

function startJob() {
  const store = JobStore.open(":memory:");
  store.create({ id: "job-1", mode: "image", request: { prompt: "a fox" }, fileTag: "t1", createdAt: Date.now() });
  const job = new RunningJob("job-1", new JobJournal(store, "job-1"), { events: false });
  const driven = drivenStream();
  job.run(async () => driven.stream());
  return { job, store, ...driven };
}

const settled = async (p: Promise<unknown>) => Promise.race([p.then(() => true), new Promise((r) => setTimeout(() => r(false), 20))]);

describe("RunningJob: the answer of an image job", () => {
  it("is known once the last image is announced, before diffuse's update arrives", async () => {
    const { job, store, push } = startJob();
    push(["updates", { refine: { model: "sd15", params, intent: "draw", warnings: [] } }]);
    push(["custom", image(0)]);
    expect(await settled(job.outcome)).toBe(false);
    push(["custom", image(1)]);
    expect(await settled(job.outcome)).toBe(true);
    const outcome = await job.outcome;
    expect(outcome).toMatchObject({ kind: "images", model: "sd15", images: [{ index: 0, seed: 7 }, { index: 1, seed: 8 }] });
    expect(store.get("job-1")).toMatchObject({ status: "succeeded", result: { images: [{ file: "x-0.png" }, { file: "x-1.png" }] } });

    // diffuse's update and the reload follow; the answer stays what it was.
    push(["updates", { diffuse: { images: [] } }]);
    push("end");
    expect((await job.finished).outcome).toBe(outcome);
  });

  it("a run that fails before its images answers with the failure, as before", async () => {
    const { job, push } = startJob();
    push(["updates", { refine: { model: "sd15", params, intent: "draw", warnings: [] } }]);
    push(["custom", image(0)]);
    push(["updates", { diffuse: { error: { code: "sd_crashed", message: "sd-cli crashed", node: "diffuse" } } }]);
    push("end");
    expect(await job.outcome).toMatchObject({ kind: "failed", error: { code: "sd_crashed" } });
  });
});
