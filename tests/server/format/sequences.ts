import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ProgressEvent } from "../../../src/events/progress-event.js";
import type { JobEvent, JobOutcome, JobResult } from "../../../src/jobs/index.js";
import type { Frame, ImageData, JobStreamFormatter } from "../../../src/server/format/stream-formatter.js";
import { jobFrames } from "../../../src/server/sse.js";

/** What a real job emitted (record-sequences.ts), as the stream driver reads it. */
export interface RecordedSequence {
  name: string;
  description: string;
  events: JobEvent[];
  finished: Pick<JobResult, "outcome">;
}

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures");

export function sequence(name: string): RecordedSequence {
  return JSON.parse(fs.readFileSync(path.join(fixtures, `${name}.json`), "utf8")) as RecordedSequence;
}

export function progressEvents(recorded: RecordedSequence): { event: ProgressEvent; seq: number }[] {
  return recorded.events.flatMap((e) => (e.type === "progress" ? [{ event: e.event, seq: e.seq }] : []));
}

export function outcomeOf(recorded: RecordedSequence): { outcome: JobOutcome; seq: number } {
  const found = recorded.events.find((e) => e.type === "outcome");
  if (found?.type !== "outcome") throw new Error(`${recorded.name}: no outcome recorded`);
  return { outcome: found.outcome, seq: found.seq };
}

/** A stand-in for an image file's base64: which image it is, readable in assertions. */
export const fakeImageData = (index: number) => `PNG${index}`;

/**
 * The frames a formatter makes of a recorded job, through the real stream driver
 * (jobFrames, what streamJob sends), with every image read as fakeImageData. `imagesRead`
 * counts the reads.
 */
export async function framesOf(recorded: RecordedSequence, formatter: JobStreamFormatter): Promise<{ frames: Frame[]; imagesRead: number }> {
  let imagesRead = 0;
  async function* events() {
    yield* recorded.events;
  }
  const job = {
    events: events(),
    outcome: Promise.resolve(outcomeOf(recorded).outcome),
    finished: Promise.resolve({ outcome: recorded.finished.outcome, state: {} }),
  };
  const readImages = async (outcome: JobOutcome): Promise<ImageData> => {
    if (outcome.kind !== "images") return [];
    imagesRead += outcome.images.length;
    return outcome.images.map((_, i) => fakeImageData(i));
  };
  const frames: Frame[] = [];
  for await (const frame of jobFrames(job, formatter, readImages)) frames.push(frame);
  return { frames, imagesRead };
}
