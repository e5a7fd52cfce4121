import type { Logger } from "../logging/index.js";
import type { JobEvent, JobOutcome } from "./job.js";
import type { JobInfo, JobObserver } from "./job-observer.js";

/**
 * Logs every job: one line when it starts, one when it is over (outcome, model, timings),
 * one per warning on the way; at `debug`, the refined prompt and each node's end. Every
 * line carries `job_id`, so `grep job-…` gives one job's story. Prompts are logged only at
 * debug: what people draw is theirs.
 */
export function jobLogObserver(logger: Logger): JobObserver {
  const log = logger.child({ component: "jobs" });
  return {
    jobStarted(job) {
      log.info({ event: "job_started", job_id: job.id, mode: job.mode, requested_model: job.requestedModel }, "job started");
    },

    jobEvent(job, event) {
      logEvent(log, job, event);
    },

    jobFinished(job, result, durationMs) {
      const { outcome } = result;
      const fields = {
        event: "job_finished",
        job_id: job.id,
        mode: job.mode,
        outcome: outcome.kind,
        duration_ms: durationMs,
        ...outcomeFields(outcome),
        timings_ms: result.state.timings,
      };
      if (outcome.kind === "failed") {
        // An internal error is our bug; the rest (crash, OOM, bad input) is the world's.
        const level = outcome.error.code === "internal" ? "error" : "warn";
        log[level](fields, `job failed: ${outcome.error.message}`);
      } else {
        log.info(fields, `job finished: ${outcome.kind}`);
      }
    },
  };
}

function logEvent(log: Logger, job: JobInfo, event: JobEvent): void {
  if (event.type === "node") {
    log.debug({ event: "node_finished", job_id: job.id, node: event.node, ms: event.update.timings?.[event.node] }, `node ${event.node} finished`);
    return;
  }
  if (event.type !== "progress") return;
  const progress = event.event;
  if (progress.kind === "warning") {
    log.warn({ event: "job_warning", job_id: job.id, phase: progress.phase, warning: progress.warning }, progress.warning);
  } else if (progress.kind === "refined" && log.isLevelEnabled("debug")) {
    log.debug(
      { event: "prompt_refined", job_id: job.id, prompt: progress.prompt, negative_prompt: progress.negativePrompt, fell_back: progress.fellBack },
      "prompt refined",
    );
  }
}

function outcomeFields(outcome: JobOutcome): Record<string, unknown> {
  switch (outcome.kind) {
    case "images":
      return {
        model: outcome.model,
        images: outcome.images.length,
        seeds: outcome.images.map((image) => image.seed),
        width: outcome.params.width,
        height: outcome.params.height,
        steps: outcome.params.steps,
        warnings: outcome.warnings.length > 0 ? outcome.warnings : undefined,
      };
    case "reply":
      return { reply_chars: outcome.text.length, warnings: outcome.warnings.length > 0 ? outcome.warnings : undefined };
    case "failed":
      return { error: outcome.error, warnings: outcome.warnings.length > 0 ? outcome.warnings : undefined };
    case "cancelled":
      return { reason: outcome.reason };
  }
}
