import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { SdOutputParser } from "../../../src/diffusion/sd-output-parser.js";
import type { SdEvent, SdStream } from "../../../src/diffusion/sd-events.js";

/** Real sd-cli captures (see fixtures/sd-cli/README.md), shared outside the repo. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const fixturesDir = path.resolve(repoRoot, "../shared/fixtures/sd-cli");

export function fixtureNames(): string[] {
  return fs
    .readdirSync(fixturesDir)
    .filter((f) => f.endsWith(".stdout"))
    .map((f) => f.slice(0, -".stdout".length))
    .sort();
}

export function readStream(name: string, stream: SdStream): Buffer {
  return fs.readFileSync(path.join(fixturesDir, `${name}.${stream}`));
}

export type TimelineEntry = [number, SdStream, Buffer];

/** The chunks as the pipe delivered them, in order (the exit line left out). */
export function readTimeline(name: string): TimelineEntry[] {
  return fs
    .readFileSync(path.join(fixturesDir, `${name}.timeline.jsonl`), "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as [number, string, unknown])
    .filter((entry): entry is [number, SdStream, string] => entry[1] === "stdout" || entry[1] === "stderr")
    .map(([ms, stream, b64]) => [ms, stream, Buffer.from(b64, "base64")]);
}

/** An event tagged with the stream whose bytes completed it. */
export type Tagged = [SdStream | "end", SdEvent];

/** Feeds chunks in order to one parser; returns every event with where it came from. */
export function parseChunks(chunks: Iterable<[SdStream, Buffer]>): Tagged[] {
  const parser = new SdOutputParser();
  const out: Tagged[] = [];
  for (const [stream, chunk] of chunks) for (const e of parser.push(stream, chunk)) out.push([stream, e]);
  for (const e of parser.end()) out.push(["end", e]);
  return out;
}

export function parseWhole(name: string): Tagged[] {
  return parseChunks([
    ["stdout", readStream(name, "stdout")],
    ["stderr", readStream(name, "stderr")],
  ]);
}

export function events(tagged: Tagged[]): SdEvent[] {
  return tagged.map(([, e]) => e);
}

/** The events each stream produced, in its own order (independent of interleaving). */
export function byStream(tagged: Tagged[]): Record<string, SdEvent[]> {
  const out: Record<string, SdEvent[]> = { stdout: [], stderr: [], end: [] };
  for (const [stream, e] of tagged) out[stream]?.push(e);
  return out;
}
