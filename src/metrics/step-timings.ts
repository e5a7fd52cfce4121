import type { JobEvent } from "../jobs/job.js";

/**
 * Collects, per running job, the duration of each sampling step as sd.cpp itself measured
 * it (its s/it, or the inverse of its it/s), until the job says which registry model drew:
 * step events do not name the model, the job's `images` outcome does. Steps of a run that
 * delivered nothing (failed, cancelled) are dropped: a crash half-way says nothing reliable
 * about the model's speed.
 */
export class StepTimings {
  /** job id → step key (image:step) → seconds. A redrawn bar overwrites, never double counts. */
  readonly #pending = new Map<string, Map<string, number>>();

  /** Takes the step out of a progress event, if it carries one; returns nothing. */
  record(jobId: string, event: JobEvent): void {
    if (event.type !== "progress" || event.event.kind !== "status") return;
    const { phase, step } = event.event;
    if (phase !== "sampling" || step?.secondsPerStep === undefined || !Number.isFinite(step.secondsPerStep)) return;
    let steps = this.#pending.get(jobId);
    if (!steps) this.#pending.set(jobId, (steps = new Map()));
    steps.set(`${step.image?.index ?? 1}:${step.current}`, step.secondsPerStep);
  }

  /** The job's measured steps (seconds each), forgotten once taken. */
  take(jobId: string): number[] {
    const steps = this.#pending.get(jobId);
    this.#pending.delete(jobId);
    return steps ? [...steps.values()] : [];
  }

  /** The job ended without delivering images. */
  forget(jobId: string): void {
    this.#pending.delete(jobId);
  }
}

/** A running mean per model, for /stats. */
export class MeanByModel {
  readonly #byModel = new Map<string, { sum: number; samples: number }>();

  add(model: string, seconds: number): void {
    const entry = this.#byModel.get(model) ?? { sum: 0, samples: 0 };
    entry.sum += seconds;
    entry.samples += 1;
    this.#byModel.set(model, entry);
  }

  snapshot(): Record<string, { mean: number; samples: number }> {
    const out: Record<string, { mean: number; samples: number }> = {};
    for (const [model, { sum, samples }] of [...this.#byModel].sort(([a], [b]) => a.localeCompare(b))) {
      out[model] = { mean: round(sum / samples, 4), samples };
    }
    return out;
  }
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
