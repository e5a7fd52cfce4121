import cliProgress from "cli-progress";
import type { Phase, ProgressEvent } from "../events/progress-event.js";

/**
 * Shows a run's progress in the terminal: one bar per phase (refining, unloading the LLM,
 * loading, sampling with step, it/s and ETA, decoding, reloading). Values come from the
 * run's events, i.e. from what sd-cli printed. Without a terminal (logs, CI) it prints one
 * plain line per phase and per sampling step instead.
 */

const labels: Record<Phase, string> = {
  queued: "Waiting for GPU",
  refining: "Refining prompt",
  unloading_llm: "Unloading LLM",
  loading_model: "Loading model",
  sampling: "Sampling",
  decoding: "Decoding",
  saving: "Saving",
  reloading_llm: "Reloading LLM",
  complete: "Done",
  error: "Failed",
};

export interface ProgressDisplay {
  update(event: ProgressEvent): void;
  stop(): void;
}

export function createProgressDisplay(stream: NodeJS.WriteStream = process.stderr): ProgressDisplay {
  return stream.isTTY ? new BarDisplay(stream) : new LineDisplay(stream);
}

class BarDisplay implements ProgressDisplay {
  private readonly multibar: cliProgress.MultiBar;
  private current: { phase: Phase; bar: cliProgress.SingleBar } | undefined;

  constructor(stream: NodeJS.WriteStream) {
    this.multibar = new cliProgress.MultiBar(
      {
        stream,
        format: "{label} |{bar}| {detail}",
        barsize: 30,
        hideCursor: true,
        clearOnComplete: false,
        autopadding: true,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  update(event: ProgressEvent): void {
    if (event.kind === "warning") {
      this.multibar.log(`warning: ${event.warning}\n`);
      return;
    }
    // The parameters are printed with the saved file; previews are for image UIs.
    if (event.phase === "complete" || event.phase === "error" || event.kind === "preview" || event.kind === "params") return;
    const step = event.kind === "status" ? event.step : undefined;
    const total = step?.total ?? 1;
    if (this.current?.phase !== event.phase) {
      this.finishCurrent();
      const bar = this.multibar.create(total, 0, { label: labels[event.phase].padEnd(16), detail: "" });
      this.current = { phase: event.phase, bar };
    }
    const bar = this.current!.bar;
    if (step) {
      bar.setTotal(step.total);
      bar.update(step.current, { detail: stepDetail(step) });
    } else {
      bar.update(0, { detail: event.message });
    }
  }

  stop(): void {
    this.finishCurrent();
    this.multibar.stop();
  }

  private finishCurrent(): void {
    if (!this.current) return;
    const { bar } = this.current;
    bar.update(bar.getTotal());
  }
}

class LineDisplay implements ProgressDisplay {
  private lastPhase: Phase | undefined;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(event: ProgressEvent): void {
    if (event.kind === "preview" || event.kind === "params") return;
    const step = event.kind === "status" ? event.step : undefined;
    if (event.kind === "warning") this.stream.write(`warning: ${event.warning}\n`);
    else if (step) this.stream.write(`${labels[event.phase]} ${stepDetail(step)}\n`);
    else if (event.phase !== this.lastPhase) this.stream.write(`${labels[event.phase]}: ${event.message}\n`);
    this.lastPhase = event.phase;
  }

  stop(): void {}
}

function stepDetail(step: NonNullable<Extract<ProgressEvent, { kind: "status" }>["step"]>): string {
  const parts = [`step ${step.current}/${step.total}`];
  if (step.image && step.image.count > 1) parts.unshift(`image ${step.image.index}/${step.image.count}`);
  if (step.secondsPerStep !== undefined) {
    parts.push(step.secondsPerStep < 1 ? `${(1 / step.secondsPerStep).toFixed(2)} it/s` : `${step.secondsPerStep.toFixed(2)} s/it`);
  }
  if (step.etaSeconds !== undefined) parts.push(`ETA ${Math.round(step.etaSeconds)} s`);
  return parts.join(" · ");
}
