import { StringDecoder } from "node:string_decoder";
import { isOutOfMemoryLine } from "./oom-patterns.js";
import { sdPhases, sdProgressBands, type SdEvent, type SdLogLevel, type SdPhase, type SdStream } from "./sd-events.js";

/**
 * Turns sd-cli's stdout/stderr bytes into typed events (REFERENCE.md §1).
 *
 * The pipe delivers chunks cut anywhere: inside a progress bar, inside a UTF-8
 * character, inside `\x1b[K`. Each stream has its own StringDecoder and its own pending
 * text, so the events are the same however the bytes were chunked. A segment ends at
 * `\r`, `\n` or `\x1b[K` (the bar's own terminator: waiting for the next `\r` would
 * report every step one step late). A bar whose speed unit has already arrived is
 * complete even before its terminator, and is reported at once.
 */

const logLinePattern = /^\[(DEBUG|INFO |WARN |ERROR)\] (\S+):(\d+)\s+- (.*)$/;
/** ggml's own messages routed through sd.cpp's logger carry the tag but no `file:line -`. */
const bareTagPattern = /^\[(DEBUG|INFO |WARN |ERROR)\]\s?(.*)$/;
const barPattern = /\|([^|]*)\|\s*(\d+)\/(\d+) - ([\d.]+)(s\/it|it\/s|MB\/s|GB\/s)/;
const segmentEnd = /\r|\n|\x1b\[K/g;
/** Other ANSI control sequences (colours if someone passed --color anyway). */
const ansiSequence = /\x1b\[[0-9;?]*[A-Za-z]/g;

const messagePatterns = {
  version: /^Version: (.+)$/,
  imageSize: /^generate_image (\d+)x(\d+)/,
  samplingStarted: /^generating image: (\d+)\/(\d+) - seed (-?\d+)/,
  samplingCompleted: /^sampling completed, taking ([\d.]+)s/,
  decodingStarted: /^decoding (\d+) latents/,
  latentDecoded: /^latent (\d+) decoded, taking ([\d.]+)s/,
  generateCompleted: /^generate_image completed in ([\d.]+)s/,
  // "save result image 0 to 'out.png' (success)"; builds around master-411 printed
  // "save result PNG image to 'out.png' (success)" without an index.
  saved: /^save result (?:PNG )?image(?: (\d+))? to '(.*)' \((\w+)\)/,
  allSaved: /^(\d+)\/(\d+) images saved/,
};

const bands = sdProgressBands;

const stderrTailLines = 20;
const maxCollectedLines = 50;

/** What the run said, beyond the events: what the runner needs for its result and errors. */
export interface SdOutputSummary {
  phase: SdPhase;
  /** `Version: SD 1.x` (model architecture). */
  modelVersion: string | undefined;
  /** `stable-diffusion.cpp version ...` (only printed by --version and the usage text). */
  programVersion: string | undefined;
  width: number | undefined;
  height: number | undefined;
  imageCount: number | undefined;
  /** Real seed of each image, by 0-based index. */
  seeds: number[];
  /** `sampling completed, taking Xs`, by image. */
  samplingSeconds: number[];
  generateSeconds: number | undefined;
  saved: { imageIndex: number; path: string; success: boolean }[];
  allSaved: { saved: number; total: number } | undefined;
  lastStep: { step: number; totalSteps: number; imageIndex: number } | undefined;
  /** Messages of `[ERROR]` lines. */
  errorLines: string[];
  /** Messages of `[WARN ]` lines. */
  warnings: string[];
  /** Last non-empty lines on stderr, log or not. */
  stderrTail: string[];
  /** The first line that reported running out of memory. */
  outOfMemoryLine: string | undefined;
}

interface StreamBuffer {
  decoder: StringDecoder;
  pending: string;
  /** Length of the pending text's prefix already reported as a bar (0: none). */
  reported: number;
}

export class SdOutputParser {
  private readonly buffers: Record<SdStream, StreamBuffer> = {
    stdout: { decoder: new StringDecoder("utf8"), pending: "", reported: 0 },
    stderr: { decoder: new StringDecoder("utf8"), pending: "", reported: 0 },
  };
  private started = false;
  private progress = 0;
  private imageIndex = 0;
  private imageCount = 1;
  private stepSecondsTotal = 0;
  private stepsMeasured = 0;
  private latents = 1;
  private latentsDecoded = 0;
  /** `generating image: i/N` was seen: from here `=` bars with it/s or s/it are steps. */
  private samplingAnnounced = false;
  /** A load ran since the last step: the next step's time includes it (sd.cpp times from the sampling start). */
  private loadedSinceStep = false;
  private events: SdEvent[] = [];
  private readonly state: SdOutputSummary = {
    phase: "loading_model",
    modelVersion: undefined,
    programVersion: undefined,
    width: undefined,
    height: undefined,
    imageCount: undefined,
    seeds: [],
    samplingSeconds: [],
    generateSeconds: undefined,
    saved: [],
    allSaved: undefined,
    lastStep: undefined,
    errorLines: [],
    warnings: [],
    stderrTail: [],
    outOfMemoryLine: undefined,
  };

  /** Feeds one chunk as the pipe delivered it; returns the events it completed. */
  push(stream: SdStream, chunk: Buffer | string): SdEvent[] {
    const buffer = this.buffers[stream];
    buffer.pending += typeof chunk === "string" ? chunk : buffer.decoder.write(chunk);
    this.drain(stream, buffer);
    return this.take();
  }

  /** The streams ended: flushes a last unterminated line. */
  end(): SdEvent[] {
    for (const stream of ["stdout", "stderr"] as const) {
      const buffer = this.buffers[stream];
      buffer.pending += buffer.decoder.end();
      this.drain(stream, buffer);
      this.segment(stream, buffer.pending.slice(buffer.reported));
      buffer.pending = "";
      buffer.reported = 0;
    }
    return this.take();
  }

  /** A copy of everything collected so far. */
  get summary(): SdOutputSummary {
    return structuredClone(this.state);
  }

  /** The last sampling step seen (cheap: no copy). */
  get lastStep(): SdOutputSummary["lastStep"] {
    return this.state.lastStep;
  }

  private take(): SdEvent[] {
    const events = this.events;
    this.events = [];
    return events;
  }

  private drain(stream: SdStream, buffer: StreamBuffer): void {
    const text = buffer.pending;
    let start = 0;
    segmentEnd.lastIndex = 0;
    for (let m = segmentEnd.exec(text); m !== null; m = segmentEnd.exec(text)) {
      // Whatever followed an already reported bar on the same segment is still news.
      this.segment(stream, text.slice(start + buffer.reported, m.index));
      buffer.reported = 0;
      start = m.index + m[0].length;
    }
    buffer.pending = start === 0 ? text : text.slice(start);
    // A bar is complete once its speed unit is there; its terminator may come later
    // (or, on builds that print s/it bars without \x1b[K, only with the next bar).
    if (buffer.reported === 0 && buffer.pending.includes("|")) {
      const bar = barPattern.exec(buffer.pending);
      if (bar) {
        const end = bar.index + bar[0].length;
        this.segment(stream, buffer.pending.slice(0, end));
        buffer.reported = end;
      }
    }
  }

  private segment(stream: SdStream, raw: string): void {
    const line = raw.includes("\x1b") ? raw.replace(ansiSequence, "") : raw;
    if (line.trim() === "") return;
    if (!this.started) {
      this.started = true;
      this.emit({ type: "phase" });
    }
    if (stream === "stderr") {
      this.state.stderrTail.push(line.trimEnd());
      if (this.state.stderrTail.length > stderrTailLines) this.state.stderrTail.shift();
    }

    const log = logLinePattern.exec(line);
    if (log) {
      const [, tag = "", file = "", lineNo = "", message = ""] = log;
      this.logLine(stream, tag.trim().toLowerCase() as SdLogLevel, `${file}:${lineNo}`, message.trim());
      return;
    }
    const bare = bareTagPattern.exec(line);
    if (bare) {
      const [, tag = "", message = ""] = bare;
      this.logLine(stream, tag.trim().toLowerCase() as SdLogLevel, "", message.trim());
      return;
    }
    const bar = barPattern.exec(line);
    if (bar) {
      const [, cells = "", current = "", total = "", speed = "", unit = ""] = bar;
      this.bar(cells, Number(current), Number(total), speed, unit);
      return;
    }
    const trimmed = line.trim();
    this.checkOutOfMemory(trimmed);
    if (trimmed.startsWith("stable-diffusion.cpp version ")) this.state.programVersion = trimmed;
    else this.message(trimmed); // unprefixed lines of older builds
  }

  private logLine(stream: SdStream, level: SdLogLevel, source: string, message: string): void {
    this.checkOutOfMemory(message);
    if (level === "error") collect(this.state.errorLines, message);
    if (level === "warn") collect(this.state.warnings, message);
    this.emit({ type: "log", level, source, message, stream });
    this.message(message);
  }

  private checkOutOfMemory(text: string): void {
    if (this.state.outOfMemoryLine === undefined && isOutOfMemoryLine(text)) this.state.outOfMemoryLine = text;
  }

  /** The log messages that move the run forward. */
  private message(message: string): void {
    let m: RegExpExecArray | null;
    if ((m = messagePatterns.samplingStarted.exec(message))) {
      this.imageIndex = Number(m[1]) - 1;
      this.imageCount = Number(m[2]);
      const seed = Number(m[3]);
      this.state.imageCount = this.imageCount;
      this.state.seeds[this.imageIndex] = seed;
      this.samplingAnnounced = true;
      // sd.cpp loads the diffusion model's weights only now, lazily: the run is sampling
      // once the first step is done, not before (loading keeps its own phase and share).
      if (this.state.phase === "sampling") this.advance(this.samplingProgress(0, 1));
      this.emit({ type: "sampling_started", imageIndex: this.imageIndex, imageCount: this.imageCount, seed });
    } else if ((m = messagePatterns.samplingCompleted.exec(message))) {
      const seconds = Number(m[1]);
      this.state.samplingSeconds[this.imageIndex] = seconds;
      this.enter("sampling");
      this.advance(this.samplingProgress(1, 1));
      this.emit({ type: "sampling_completed", imageIndex: this.imageIndex, seconds });
    } else if ((m = messagePatterns.decodingStarted.exec(message))) {
      this.latents = Math.max(1, Number(m[1]));
      this.latentsDecoded = 0;
      this.enter("decoding");
      this.advance(bands.decoding[0]);
      this.emit({ type: "decoding_started", latents: this.latents });
    } else if ((m = messagePatterns.latentDecoded.exec(message))) {
      this.latentsDecoded = Number(m[1]);
      this.advance(this.decodingProgress(0));
      this.emit({
        type: "decode_progress",
        unit: "latent",
        current: this.latentsDecoded,
        total: this.latents,
        seconds: Number(m[2]),
      });
    } else if ((m = messagePatterns.saved.exec(message))) {
      const imageIndex = m[1] === undefined ? this.state.saved.length : Number(m[1]);
      const path = m[2] ?? "";
      const success = m[3] === "success";
      this.state.saved.push({ imageIndex, path, success });
      this.enter("saving");
      const count = this.state.imageCount ?? this.imageCount;
      this.advance(bands.saving[0] + (bands.saving[1] - bands.saving[0]) * (this.state.saved.length / Math.max(count, 1)));
      this.emit({ type: "image_saved", imageIndex, path, success });
    } else if ((m = messagePatterns.allSaved.exec(message))) {
      const saved = Number(m[1]);
      const total = Number(m[2]);
      this.state.allSaved = { saved, total };
      this.enter("saving");
      this.advance(1);
      this.emit({ type: "images_saved", saved, total });
    } else if ((m = messagePatterns.imageSize.exec(message))) {
      this.state.width = Number(m[1]);
      this.state.height = Number(m[2]);
      this.emit({ type: "image_size", width: this.state.width, height: this.state.height });
    } else if ((m = messagePatterns.version.exec(message))) {
      this.state.modelVersion = (m[1] ?? "").trim();
      this.emit({ type: "model_version", version: this.state.modelVersion });
    } else if ((m = messagePatterns.generateCompleted.exec(message))) {
      this.state.generateSeconds = Number(m[1]);
    }
  }

  private bar(cells: string, current: number, total: number, speedText: string, unit: string): void {
    const speed = Number(speedText);
    const phase = this.state.phase;
    // `#` cells and MB/s are tensor loading; older builds drew loading with `=` and it/s,
    // which only the phase (no "generating image" yet) tells apart from steps.
    const loading = cells.includes("#") || unit === "MB/s" || unit === "GB/s" || !this.samplingAnnounced;
    if (loading) {
      this.loadBar(current, total, `${speedText}${unit}`);
      return;
    }
    if (phase === "loading_model" || phase === "sampling") {
      // The first step ends the loading, wherever sd.cpp did it.
      this.enter("sampling");
      // it/s is printed with 2 decimals: 4 decimals of its inverse is all the precision there is.
      const secondsPerStep = unit === "s/it" ? speed : speed > 0 ? round(1 / speed, 4) : 0;
      // sd.cpp times a step from the start of sampling: a step after a lazy load counts
      // the load too. That is no step rate: the ETA's mean leaves it out.
      const includesLoad = this.loadedSinceStep;
      this.loadedSinceStep = false;
      if (!includesLoad) {
        this.stepSecondsTotal += secondsPerStep;
        this.stepsMeasured += 1;
      }
      const mean = this.stepsMeasured > 0 ? this.stepSecondsTotal / this.stepsMeasured : secondsPerStep;
      const remaining = total - current + (this.imageCount - 1 - this.imageIndex) * total;
      this.state.lastStep = { step: current, totalSteps: total, imageIndex: this.imageIndex };
      this.advance(this.samplingProgress(current, total));
      this.emit({
        type: "step",
        step: current,
        totalSteps: total,
        imageIndex: this.imageIndex,
        imageCount: this.imageCount,
        secondsPerStep,
        includesLoad,
        etaSeconds: round(mean * Math.max(remaining, 0), 2),
      });
    } else if (phase === "decoding") {
      // --vae-tiling: one tick per tile, the bar restarts for each latent.
      this.advance(this.decodingProgress(current / Math.max(total, 1)));
      this.emit({ type: "decode_progress", unit: "tile", current, total });
    }
  }

  /**
   * A tensor-loading bar: phase `loading_model` wherever it falls (the text encoder before
   * sampling, the diffusion model after `generating image`, the VAE after `decoding`).
   * Loads before the first step share the loading band: those before `generating image`
   * (text encoders) its first half, those after (the diffusion model) its second half;
   * each load fills its half as its bar does (how many loads a model has is not known
   * ahead: a second one in the same half moves the bar only once it passes the first).
   * A later load (the VAE) keeps the run's progress where it is.
   */
  private loadBar(current: number, total: number, speed: string): void {
    this.loadedSinceStep = true;
    if (this.state.phase === "loading_model") {
      const [from, to] = bands.loading_model;
      const done = (this.samplingAnnounced ? 0.5 : 0) + 0.5 * (current / Math.max(total, 1));
      this.advance(from + (to - from) * done);
    }
    this.emit({ type: "load_progress", current, total, speed }, "loading_model");
  }

  private samplingProgress(step: number, totalSteps: number): number {
    const [from, to] = bands.sampling;
    const done = (this.imageIndex + step / Math.max(totalSteps, 1)) / Math.max(this.imageCount, 1);
    return from + (to - from) * done;
  }

  private decodingProgress(partOfNextLatent: number): number {
    const [from, to] = bands.decoding;
    return from + (to - from) * Math.min(1, (this.latentsDecoded + partOfNextLatent) / this.latents);
  }

  /** Phases only move forward: a stray line never sends a progress bar backwards. */
  private enter(phase: SdPhase): void {
    if (sdPhases.indexOf(phase) <= sdPhases.indexOf(this.state.phase)) return;
    this.state.phase = phase;
    this.advance(bands[phase][0]);
    this.emit({ type: "phase" });
  }

  private advance(progress: number): void {
    this.progress = Math.max(this.progress, round(Math.min(1, progress), 4));
  }

  private emit(event: DistributiveOmit<SdEvent, "phase" | "progress">, phase: SdPhase = this.state.phase): void {
    this.events.push({ ...event, phase, progress: this.progress } as SdEvent);
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function collect(list: string[], line: string): void {
  if (list.length < maxCollectedLines) list.push(line);
  else list.splice(0, list.length, ...list.slice(1), line);
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
