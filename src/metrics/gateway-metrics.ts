import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** What the gateway did with a call (src/server/gateway/ollama-calls.ts), or `refused` before it was classified. */
export type GatewayCallKind = "gated" | "unload" | "management" | "refused";

export interface GatewayCallSample {
  /** Ollama's route pattern (`/api/chat`, `/api/blobs/:digest`), `(unknown)` for a path Ollama has not. */
  route: string;
  kind: GatewayCallKind;
  /** The model a gated call named, as given; ignored for the other kinds. */
  model?: string | undefined;
  status: number;
}

/**
 * Distinct model names that get a label of their own. Names come from clients, so they are
 * admitted only once Ollama answered a call for them with success (an installed model), and
 * only this many; the rest count as `(other)`. A box has a handful of models.
 */
const maxModelLabels = 32;
const otherModel = "(other)";

/**
 * The Ollama gateway's figures on ServiceMetrics' registry (so /metrics shows them): calls by
 * route, kind, model and status; time gated calls waited for the GPU; LLM leases the gateway
 * holds now. Label values are bounded: route patterns, four kinds, statuses, and the models
 * above.
 */
export class GatewayMetrics {
  readonly #requests: Counter<"route" | "kind" | "model" | "status">;
  readonly #gpuWait: Histogram<"route">;
  readonly #leases: Gauge;
  readonly #models = new Set<string>();

  /** Registers the gateway's metrics on `registry` (ServiceMetrics does, once, on its own). */
  constructor(registry: Registry) {
    const registers = [registry];
    this.#requests = new Counter({
      name: "diffugen_gateway_requests_total",
      help: "Calls to the Ollama gateway by Ollama route, kind (gated, unload, management, refused), model (gated calls) and status",
      labelNames: ["route", "kind", "model", "status"],
      registers,
    });
    this.#gpuWait = new Histogram({
      name: "diffugen_gateway_gpu_wait_seconds",
      help: "Time a gated Ollama call waited for an LLM lease from the GPU scheduler (0 when the GPU was free)",
      labelNames: ["route"],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers,
    });
    this.#leases = new Gauge({
      name: "diffugen_gateway_llm_leases",
      help: "LLM leases Ollama gateway calls hold now (a call holds one until its answer has been sent)",
      registers,
    });
    this.#leases.set(0);
  }

  callFinished(sample: GatewayCallSample): void {
    const model = sample.kind === "gated" ? this.#modelLabel(sample.model ?? "", sample.status) : "";
    this.#requests.inc({ route: sample.route, kind: sample.kind, model, status: String(sample.status) });
  }

  gpuWaited(route: string, seconds: number): void {
    this.#gpuWait.observe({ route }, seconds);
  }

  leaseTaken(): void {
    this.#leases.inc();
  }

  leaseReturned(): void {
    this.#leases.dec();
  }

  #modelLabel(model: string, status: number): string {
    if (this.#models.has(model)) return model;
    if (status >= 200 && status < 300 && model !== "" && this.#models.size < maxModelLabels) {
      this.#models.add(model);
      return model;
    }
    return otherModel;
  }
}
