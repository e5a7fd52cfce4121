import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ProgressEvent } from "../../../src/events/progress-event.js";
import { JobStore } from "../../../src/jobs/index.js";

let dir: string;
let store: JobStore;
let clock = 1_700_000_000_000;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "diffugen-store-"));
  store = JobStore.open(path.join(dir, "data", "jobs.sqlite"));
});
afterEach(() => {
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const status = (progress: number, message: string): ProgressEvent => ({ kind: "status", phase: "sampling", progress, message, at: ++clock });

function newJob(id: string, createdAt = ++clock) {
  store.create({ id, mode: "image", request: { prompt: "a red fox" }, fileTag: `tag${id}`, createdAt });
}

describe("JobStore", () => {
  it("keeps a job's events in order with its progress, and ends it once", () => {
    newJob("a");
    store.appendEvent("a", 1, status(30, "Step 1/4"));
    store.appendEvent("a", 2, { kind: "preview", phase: "sampling", progress: 40, message: "preview", at: ++clock, pngBase64: "AAAA", width: 8, height: 8 });
    store.appendEvent("a", 3, status(50, "Step 2/4"));
    expect(store.get("a")).toMatchObject({ status: "running", phase: "sampling", progress: 50, message: "Step 2/4", lastSeq: 3 });
    expect(store.eventsAfter("a", 1).map((e) => e.seq)).toEqual([2, 3]);

    const ended = store.finish("a", 4, { status: "failed", error: { code: "out_of_memory", message: "out of VRAM" }, warnings: ["w"], at: ++clock });
    expect(ended).toBe(true);
    // Ending twice writes nothing (a cancel racing the answer).
    expect(store.finish("a", 5, { status: "succeeded", warnings: [], at: ++clock })).toBe(false);
    const job = store.get("a")!;
    expect(job).toMatchObject({ status: "failed", error: { code: "out_of_memory" }, warnings: ["w"], progress: 100, lastSeq: 4 });
    // Previews are superseded once the job ends; everything else replays, ending with `end`.
    expect(store.eventsAfter("a", 0).map((e) => [e.seq, e.event.kind])).toEqual([
      [1, "status"],
      [3, "status"],
      [4, "end"],
    ]);
  });

  it("survives a reopen, and marks jobs left running by a dead process as interrupted", () => {
    newJob("done");
    store.finish("done", 1, { status: "succeeded", warnings: [], at: ++clock, result: { kind: "reply", text: "hi" } });
    newJob("stranded");
    store.appendEvent("stranded", 1, status(40, "Step 3/8"));
    store.close();

    store = JobStore.open(path.join(dir, "data", "jobs.sqlite"));
    const interrupted = store.markInterrupted();
    expect(interrupted.map((j) => j.id)).toEqual(["stranded"]);
    expect(store.get("stranded")).toMatchObject({ status: "failed", error: { code: "interrupted" } });
    expect(store.eventsAfter("stranded", 1).map((e) => e.event)).toEqual([expect.objectContaining({ kind: "end", status: "failed" })]);
    expect(store.get("done")).toMatchObject({ status: "succeeded", result: { kind: "reply", text: "hi" } });
    expect(store.markInterrupted()).toEqual([]);
  });

  it("serves a file tag only if no job owns it or its job succeeded", () => {
    newJob("ok");
    newJob("bad");
    newJob("live");
    store.finish("ok", 1, { status: "succeeded", warnings: [], at: ++clock });
    store.finish("bad", 1, { status: "cancelled", warnings: [], at: ++clock });
    expect(store.fileTagServable("tagok")).toBe(true);
    expect(store.fileTagServable("tagbad")).toBe(false);
    expect(store.fileTagServable("taglive")).toBe(false);
    expect(store.fileTagServable("nobody")).toBe(true);
  });

  it("lists newest first and pages with `before`", () => {
    for (const id of ["j1", "j2", "j3", "j4", "j5"]) newJob(id);
    expect(store.list({ limit: 10 }).map((j) => j.id)).toEqual(["j5", "j4", "j3", "j2", "j1"]);
    expect(store.list({ limit: 2 }).map((j) => j.id)).toEqual(["j5", "j4"]);
    expect(store.list({ limit: 2, before: "j4" }).map((j) => j.id)).toEqual(["j3", "j2"]);
    expect(store.list({ limit: 2, before: "missing" })).toEqual([]);
  });

  it("prunes finished jobs by age and count, never a running one", () => {
    const now = Date.now();
    const day = 86_400_000;
    newJob("old", now - 10 * day);
    newJob("old-running", now - 10 * day);
    newJob("mid", now - 2 * day);
    newJob("new", now - 1000);
    for (const id of ["old", "mid", "new"]) store.finish(id, 1, { status: "succeeded", warnings: [], at: now });
    expect(store.prune({ maxAgeMs: 5 * day, maxCount: 0 }, now)).toBe(1);
    expect(store.get("old")).toBeUndefined();
    expect(store.eventsAfter("old", 0)).toEqual([]);
    expect(store.prune({ maxAgeMs: 0, maxCount: 1 }, now)).toBe(1);
    expect(store.list({ limit: 10 }).map((j) => j.id)).toEqual(["new", "old-running"]);
  });
});
