import { readFile } from "node:fs/promises";
import { completePngInfo } from "./png-check.js";
import type { SdPhase, SdPreviewEvent } from "./sd-events.js";

export interface PreviewContext {
  phase: SdPhase;
  progress: number;
  step: number;
  imageIndex: number;
}

/**
 * Reads the preview PNG sd-cli rewrites in place, when told a step happened (no polling
 * timer: sd-cli's output is the clock). Emits only complete, valid PNGs that differ from
 * the previous one; a half-written file is skipped and the next step reads it again.
 * One read at a time: steps that arrive during a read collapse into one more read.
 */
export class PreviewWatcher {
  private last: Buffer | undefined;
  private reading: Promise<void> | undefined;
  private queued: PreviewContext | undefined;
  private stopped = false;

  constructor(
    private readonly path: string,
    private readonly onPreview: (event: SdPreviewEvent) => void,
  ) {}

  /** A step happened: read the preview soon. */
  poke(context: PreviewContext): void {
    if (this.stopped) return;
    if (this.reading) {
      this.queued = context;
      return;
    }
    this.reading = this.read(context);
  }

  /** Resolves once no read is in flight (call before deciding the run's result). */
  async idle(): Promise<void> {
    while (this.reading) await this.reading;
  }

  /** No more reads or events (the run failed or finished). */
  stop(): void {
    this.stopped = true;
    this.queued = undefined;
  }

  private async read(context: PreviewContext): Promise<void> {
    try {
      let png: Buffer;
      try {
        png = await readFile(this.path);
      } catch {
        return; // not written yet, or being replaced
      }
      if (this.stopped) return;
      const info = completePngInfo(png);
      if (!info || (this.last && this.last.equals(png))) return;
      this.last = png;
      this.onPreview({ type: "preview", png, width: info.width, height: info.height, ...context });
    } finally {
      const next = this.queued;
      this.queued = undefined;
      this.reading = next && !this.stopped ? this.read(next) : undefined;
    }
  }
}
