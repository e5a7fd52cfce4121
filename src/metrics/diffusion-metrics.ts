import { Counter, Histogram, type Registry } from "prom-client";
import type { SdBackendKind, SdBackendStats, SdServerStopReason } from "../diffusion/index.js";
import { CountFollower, DurationFollower } from "./duration-follower.js";
import type { DiffusionStats } from "./service-stats.js";

const backends: readonly SdBackendKind[] = ["cli", "server"];

/**
 * The diffusion backends' figures on the service's registry: model loads per backend (the
 * figure sd-server exists to bring down), sd-server starts and stops by reason, and the
 * time from a job's start on the GPU to its first sampling step. Read from the backends'
 * stats() whenever the service's figures are refreshed.
 */
export class DiffusionMetrics {
  readonly #source: { stats(): SdBackendStats };
  readonly #loads: Counter<"backend">;
  readonly #serverStarts: Counter;
  readonly #serverStops: Counter<"reason">;
  readonly #firstStep: Histogram<"backend">;
  readonly #loadsSeen = { cli: new CountFollower(), server: new CountFollower() };
  readonly #startsSeen = new CountFollower();
  readonly #stopsSeen = new Map<string, CountFollower>();
  readonly #firstStepSeen = { cli: new DurationFollower(), server: new DurationFollower() };
  #last: SdBackendStats | undefined;

  constructor(source: { stats(): SdBackendStats }, registry: Registry) {
    this.#source = source;
    const registers = [registry];
    this.#loads = new Counter({
      name: "diffugen_model_loads_total",
      help: "Image model loads, by backend: every sd-cli run, every sd-server start",
      labelNames: ["backend"],
      registers,
    });
    this.#serverStarts = new Counter({ name: "diffugen_sd_server_starts_total", help: "sd-server processes started", registers });
    this.#serverStops = new Counter({
      name: "diffugen_sd_server_stops_total",
      help: "sd-server processes stopped (exit confirmed), by reason: burst_end, model_change, cli_job, cancel, failure, shutdown",
      labelNames: ["reason"],
      registers,
    });
    this.#firstStep = new Histogram({
      name: "diffugen_time_to_first_step_seconds",
      help: "From a job's start on the GPU to its first sampling step (a model load included, when there is one), by backend",
      labelNames: ["backend"],
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120],
      registers,
    });
  }

  refresh(): SdBackendStats {
    const stats = this.#source.stats();
    for (const backend of backends) {
      this.#loads.labels(backend).inc(this.#loadsSeen[backend].increase(stats.loads[backend]));
      for (const ms of this.#firstStepSeen[backend].newSamples(stats.firstStep[backend])) {
        this.#firstStep.labels(backend).observe(ms / 1000);
      }
    }
    this.#serverStarts.inc(this.#startsSeen.increase(stats.serverStarts));
    for (const [reason, count] of Object.entries(stats.serverStops) as [SdServerStopReason, number][]) {
      let seen = this.#stopsSeen.get(reason);
      if (!seen) this.#stopsSeen.set(reason, (seen = new CountFollower()));
      this.#serverStops.labels(reason).inc(seen.increase(count));
    }
    this.#last = stats;
    return stats;
  }

  /** The `diffusion` part of GET /stats. */
  snapshot(): DiffusionStats {
    const stats = this.#last ?? this.refresh();
    const firstStep = (backend: SdBackendKind) => {
      const s = stats.firstStep[backend];
      return { count: s.count, mean_ms: Math.round(s.meanMs), last_ms: s.lastMs === undefined ? null : Math.round(s.lastMs) };
    };
    return {
      model_loads: { ...stats.loads },
      jobs: { ...stats.jobs },
      sd_server: { starts: stats.serverStarts, stops: { ...stats.serverStops } },
      first_step: { cli: firstStep("cli"), server: firstStep("server") },
    };
  }
}
