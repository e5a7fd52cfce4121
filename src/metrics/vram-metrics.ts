import { Counter, Gauge, type Registry } from "prom-client";
import type { GpuSchedulerStats, VramSnapshot } from "../gpu/index.js";
import { CountFollower } from "./duration-follower.js";
import type { VramStats } from "./service-stats.js";

/** Where the ledger's last reading comes from (VRAM_POLICY=fit's ledger; read, never driven). */
export interface VramSource {
  snapshot(): VramSnapshot | undefined;
}

const MiB = 2 ** 20;

/**
 * The VRAM ledger on the service's registry: the card's memory as last read
 * (`diffugen_vram_bytes{kind}`: total, free, llm = what Ollama's models hold, diffusion =
 * everything else in use: the drawing, the driver, the desktop) and the swaps VRAM_POLICY=fit
 * avoided. Updated with the scheduler's figures.
 */
export class VramMetrics {
  readonly #source: VramSource | undefined;
  readonly #bytes: Gauge<"kind">;
  readonly #avoided: Counter;
  readonly #avoidedSeen = new CountFollower();

  constructor(source: VramSource | undefined, registry: Registry) {
    this.#source = source;
    const registers = [registry];
    this.#bytes = new Gauge({
      name: "diffugen_vram_bytes",
      help: "The GPU's memory at the ledger's last reading: total, free, llm (Ollama's models), diffusion (everything else in use)",
      labelNames: ["kind"],
      registers,
    });
    this.#avoided = new Counter({
      name: "diffugen_swaps_avoided_total",
      help: "Drawings that ran beside the LLM (VRAM_POLICY=fit) instead of moving it out",
      registers,
    });
  }

  refresh(gpu: GpuSchedulerStats): void {
    this.#avoided.inc(this.#avoidedSeen.increase(gpu.fit?.besideLlm ?? 0));
    const card = this.#source?.snapshot();
    if (!card) return;
    this.#bytes.labels("total").set(card.totalMiB * MiB);
    this.#bytes.labels("free").set(card.freeMiB * MiB);
    this.#bytes.labels("llm").set(card.llmMiB * MiB);
    this.#bytes.labels("diffusion").set(card.otherMiB * MiB);
  }

  snapshot(gpu: GpuSchedulerStats): VramStats {
    const card = this.#source?.snapshot();
    return {
      policy: this.#source ? "fit" : "swap",
      swaps_avoided: gpu.fit?.besideLlm ?? 0,
      whole_gpu: gpu.fit?.wholeGpu ?? 0,
      last_decision: gpu.fit?.last?.message ?? null,
      card: card
        ? { tool: card.tool, total_mib: card.totalMiB, free_mib: card.freeMiB, used_mib: card.usedMiB, llm_mib: card.llmMiB, other_mib: card.otherMiB, margin_mib: card.marginMiB, at: new Date(card.at).toISOString() }
        : null,
    };
  }
}
