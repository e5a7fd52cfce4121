import type { FitAdvisor, FitDecision, VramNeed } from "./fit-advisor.js";
import type { GpuMemory, GpuMemoryReader } from "./gpu-memory.js";

/**
 * The VRAM ledger behind VRAM_POLICY=fit: what the card has (its memory tool), what the
 * resident LLMs hold (Ollama's /api/ps `size_vram`), and what a drawing will need (learned
 * from earlier runs of its shape, else an estimate that errs high). A drawing runs beside
 * the LLM when its need plus VRAM_MARGIN_MB fits in what the card has free now.
 */

export interface ResidentLlm {
  name: string;
  vramMiB: number;
}

export interface VramLedgerOptions {
  readMemory: GpuMemoryReader;
  /** The LLMs Ollama holds now, with what they hold in VRAM. */
  residentLlms: (signal?: AbortSignal) => Promise<ResidentLlm[]>;
  marginMiB: number;
}

/** The last reading, for /health, /stats, /metrics and `diffugen status`. */
export interface VramSnapshot {
  tool: GpuMemory["tool"];
  totalMiB: number;
  usedMiB: number;
  freeMiB: number;
  /** What the resident LLMs hold (size_vram). */
  llmMiB: number;
  llms: ResidentLlm[];
  /** Used by everything else: a drawing, the desktop, the driver. */
  otherMiB: number;
  marginMiB: number;
  at: number;
}

export class VramLedger implements FitAdvisor {
  readonly #options: VramLedgerOptions;
  #last: VramSnapshot | undefined;

  constructor(options: VramLedgerOptions) {
    this.#options = options;
  }

  get marginMiB(): number {
    return this.#options.marginMiB;
  }

  /** Reads the card and the LLMs now; undefined when the memory tool does not answer. */
  async read(signal?: AbortSignal): Promise<VramSnapshot | undefined> {
    const [memory, llms] = await Promise.all([this.#options.readMemory(signal), this.#options.residentLlms(signal).catch(() => [])]);
    if (!memory) return undefined;
    const llmMiB = llms.reduce((sum, m) => sum + m.vramMiB, 0);
    this.#last = {
      tool: memory.tool,
      totalMiB: memory.totalMiB,
      usedMiB: memory.usedMiB,
      freeMiB: memory.freeMiB,
      llmMiB,
      llms,
      otherMiB: Math.max(0, memory.usedMiB - llmMiB),
      marginMiB: this.#options.marginMiB,
      at: Date.now(),
    };
    return this.#last;
  }

  /** The last reading (read() refreshes it). */
  snapshot(): VramSnapshot | undefined {
    return this.#last;
  }

  async check(need: VramNeed | undefined, signal?: AbortSignal): Promise<FitDecision> {
    const card = await this.read(signal);
    if (!card) return { fits: false, message: "the GPU's memory cannot be read: moving the LLM out", models: [] };
    const models = card.llms.map((m) => m.name);
    const beside = models.length > 0 ? models.join(", ") : "nothing";
    if (!need) return { fits: false, message: "the drawing's need is unknown: moving the LLM out", models, totalMiB: card.totalMiB, freeMiB: card.freeMiB };
    const margin = this.#options.marginMiB;
    const fits = need.mib + margin <= card.freeMiB;
    const guess = need.estimated ? " (estimated)" : "";
    const message = fits
      ? `fits beside ${beside} (${gb(card.usedMiB + need.mib)} of ${gb(card.totalMiB)} GB)`
      : `needs the whole GPU: ${need.model} needs ${gb(need.mib)} GB${guess} + ${gb(margin)} GB margin, ${gb(card.freeMiB)} of ${gb(card.totalMiB)} GB free beside ${beside}: moving the LLM out`;
    return { fits, message, models, needMiB: need.mib, freeMiB: card.freeMiB, totalMiB: card.totalMiB };
  }
}

function gb(mib: number): string {
  return (mib / 1024).toFixed(1);
}
