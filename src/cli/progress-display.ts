import cliProgress from "cli-progress";
import type { Phase, ProgressEvent } from "../events/progress-event.js";

/**
 * Shows a run's progress in the terminal: one bar per phase (refining, unloading the LLM,
 * loading weights, sampling with step, it/s and ETA, decoding, reloading). Values come
 * from the run's events, i.e. from what sd-cli printed. Without a terminal (logs, CI) it
 * prints one plain line per phase and per sampling step instead.
 *
 * Nothing else may write to the terminal while the bars are drawn: a line written behind
 * their back lands in the middle of them. Log lines that must show go through `log()`.
 * The outcome (done, or the error) is the command's to print, once: the display skips it.
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

const labelWidth = Math.max(...Object.values(labels).map((label) => label.length));

export interface ProgressDisplay {
  update(event: ProgressEvent): void;
  /** Writes a whole line (with its newline) without breaking the bars. */
  log(line: string): void;
  stop(): void;
}

export function createProgressDisplay(stream: NodeJS.WriteStream = process.stderr): ProgressDisplay {
  return stream.isTTY ? new BarDisplay(stream) : new LineDisplay(stream);
}

type StepInfo = NonNullable<Extract<ProgressEvent, { kind: "status" }>["step"]>;

/** "Loading model weights 44/686": a loading event's count (it carries no step: loading is no step). */
const countPattern = /(\d+)\/(\d+)\s*$/;

class BarDisplay implements ProgressDisplay {
  private readonly multibar: cliProgress.MultiBar;
  /** One bar per phase, kept: a phase that comes back (the VAE's weights load after decoding began) redraws its own. */
  private readonly bars = new Map<Phase, { bar: cliProgress.SingleBar; lastStep?: StepInfo }>();
  private current: Phase | undefined;

  constructor(private readonly stream: NodeJS.WriteStream) {
    this.multibar = new cliProgress.MultiBar(
      {
        stream,
        format: "{label} |{bar}| {detail}",
        barsize: 24,
        hideCursor: true,
        clearOnComplete: false,
        autopadding: true,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  update(event: ProgressEvent): void {
    if (event.kind === "warning") {
      this.log(`warning: ${event.warning}\n`);
      return;
    }
    // The outcome is the command's to print; the parameters are printed with the saved
    // file; previews are for image UIs.
    if (event.phase === "complete" || event.phase === "error" || event.kind === "preview" || event.kind === "params") return;
    const step = event.kind === "status" ? event.step : undefined;
    if (this.current !== event.phase) {
      // A phase is over when the run moves on; a weight load in the middle of decoding
      // (the VAE's) only pauses it.
      if (!(event.phase === "loading_model" && this.bars.has(event.phase))) this.finishCurrent();
      this.current = event.phase;
    }
    let entry = this.bars.get(event.phase);
    if (!entry) {
      entry = { bar: this.multibar.create(1, 0, { label: labels[event.phase].padEnd(labelWidth), detail: "" }) };
      this.bars.set(event.phase, entry);
    }
    const { bar } = entry;
    if (step) {
      // A batch is one bar: image 2's steps continue after image 1's.
      const images = step.image && step.image.count > 1 ? step.image : undefined;
      bar.setTotal(step.total * (images?.count ?? 1));
      bar.update(step.total * ((images?.index ?? 1) - 1) + step.current, { detail: stepDetail(step) });
      entry.lastStep = step;
      return;
    }
    const count = event.phase === "loading_model" ? countPattern.exec(event.message) : null;
    if (count) {
      bar.setTotal(Number(count[2]));
      bar.update(Number(count[1]), { detail: event.message });
    } else if (entry.lastStep) {
      // After the last step ("Sampled image 1 in 23 s"): the bar stays where the steps left it.
      const { current, total } = entry.lastStep;
      bar.update({ detail: `step ${current}/${total} · ${event.message}` });
    } else {
      bar.update({ detail: event.message });
    }
  }

  log(line: string): void {
    // Before the first bar there is nothing to break.
    if (this.bars.size === 0) this.stream.write(line);
    else this.multibar.log(line.endsWith("\n") ? line : `${line}\n`);
  }

  stop(): void {
    this.finishCurrent();
    this.multibar.stop();
  }

  private finishCurrent(): void {
    const entry = this.current === undefined ? undefined : this.bars.get(this.current);
    if (entry) entry.bar.update(entry.bar.getTotal());
  }
}

class LineDisplay implements ProgressDisplay {
  private lastPhase: Phase | undefined;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(event: ProgressEvent): void {
    if (event.kind === "preview" || event.kind === "params") return;
    if (event.kind === "warning") {
      this.stream.write(`warning: ${event.warning}\n`);
      return;
    }
    // The command prints the error itself, once.
    if (event.phase === "error" || event.kind === "error") return;
    const step = event.kind === "status" ? event.step : undefined;
    if (step) this.stream.write(`${labels[event.phase]} ${stepDetail(step)}\n`);
    else if (event.phase !== this.lastPhase) this.stream.write(`${phaseLine(event.phase, event.message)}\n`);
    this.lastPhase = event.phase;
  }

  log(line: string): void {
    this.stream.write(line.endsWith("\n") ? line : `${line}\n`);
  }

  stop(): void {}
}

/** "Sampling: Sampling (seed 42)" says it twice: a message that starts with the label stands alone. */
function phaseLine(phase: Phase, message: string): string {
  const label = labels[phase];
  return message.toLowerCase().startsWith(label.toLowerCase()) ? message : `${label}: ${message}`;
}

function stepDetail(step: StepInfo): string {
  const parts = [`step ${step.current}/${step.total}`];
  if (step.image && step.image.count > 1) parts.unshift(`image ${step.image.index}/${step.image.count}`);
  if (step.secondsPerStep !== undefined) {
    parts.push(step.secondsPerStep < 1 ? `${(1 / step.secondsPerStep).toFixed(2)} it/s` : `${step.secondsPerStep.toFixed(2)} s/it`);
  }
  if (step.etaSeconds !== undefined) parts.push(`ETA ${Math.round(step.etaSeconds)} s`);
  return parts.join(" · ");
}
