// The strict mode ("never both"): who is resident, who runs.
export function setResidentModels(dir: string, models: string[]): void;
export function residentModels(dir: string): string[];
export function markDiffusionStarted(dir: string, pid: number): void;
export function markDiffusionEnded(dir: string, pid: number): void;
export function isAlive(pid: number): boolean;
export function runningDiffusions(dir: string): number[];

// The card ("never over the card's memory").
export interface CardSpec {
  /** memory.total as nvidia-smi prints it. */
  totalMiB: number;
  /** Default by size (an RTX 4060 Laptop GPU up to 8 GB, an RTX 3060 up to 12 GB...). */
  name?: string;
  /** Used by the driver and the desktop, listed by no compute app. Default 300. */
  baseMiB?: number;
  /** memory.reserved: neither used nor free. Default 0. */
  reservedMiB?: number;
  /** Default "550.54.14". */
  driverVersion?: string;
  uuid?: string;
}
export type Card = Required<CardSpec>;
export const CARDS: { readonly "8GB": { readonly totalMiB: 8188; readonly name: string }; readonly "12GB": { readonly totalMiB: 12288; readonly name: string } };
export function setCard(dir: string, spec: CardSpec | null): void;
export function readCard(dir: string): Card | undefined;

export interface Claim {
  /** "sd-<pid>" or "llm-<model>". */
  holder: string;
  kind: "sd" | "llm";
  /** The pid nvidia-smi lists. */
  pid: number;
  /** The process whose death ends the claim. */
  ownerPid: number;
  mib: number;
  processName: string;
  label: string;
  at: number;
}
export interface ClaimRequest {
  holder: string;
  kind: "sd" | "llm";
  /** Wanted in total (a second claim by the same holder replaces the first). */
  mib: number;
  /** Default: ownerPid. */
  pid?: number;
  /** Default: this process. */
  ownerPid?: number;
  processName?: string;
  label?: string;
  /** Grant what is free instead of refusing (Ollama's CPU offload). */
  partial?: boolean;
}
export type ClaimResult =
  | { ok: true; mib: number; wantedMiB: number; freeMiB: number }
  | { ok: false; mib: 0; wantedMiB: number; freeMiB: number; holders: Claim[] };
export function claimFile(holder: string): string;
export function sdHolder(pid: number): string;
export function llmHolder(model: string): string;
export function claims(dir: string): Claim[];
export function claim(dir: string, req: ClaimRequest): ClaimResult;
export function release(dir: string, holder: string): void;
export function claimOf(dir: string, holder: string): Claim | undefined;
export function usedMiB(dir: string): number;
export function freeMiB(dir: string): number;
export interface Ledger {
  card: Card | undefined;
  claims: Claim[];
  llmMiB: number;
  sdMiB: number;
  usedMiB: number;
  freeMiB: number;
  /** Rows of `nvidia-smi --query-compute-apps`: claims of one pid added up. */
  processes: { pid: number; usedMiB: number; processName: string }[];
}
export function ledger(dir: string): Ledger;

// What a generation needs (tests/fakes/sd-cli/models.mjs).
export const VRAM_NEEDS: Readonly<Record<"SD 1.x" | "SD 2.x" | "SDXL" | "SD3.x" | "Flux" | "Z-Image" | "Qwen Image", { readonly baseMiB: number; readonly perMegapixelMiB: number }>>;
export function vramNeedMiB(shape: { version: string; width: number; height: number; vaeTiling?: boolean }): number;
export function vramNeedFromEnv(raw: string | undefined, width: number, height: number): number | undefined;

// Records.
export function recordViolation(dir: string, by: "ollama" | "sd-cli" | "sd-server" | "sd", what: string): void;
export function readViolations(dir: string): { at: number; by: string; what: string }[];
export interface OomRecord {
  at: number;
  by: "sd-cli" | "sd-server";
  pid: number;
  /** no-room: the card had less free than the need; llm-resident: the strict mode's rule; forced: FAKE_SD_OOM. */
  reason: "no-room" | "llm-resident" | "forced";
  needMiB: number | null;
  freeMiB: number | null;
  what: string;
}
export function recordOom(dir: string, oom: Omit<OomRecord, "at">): void;
export function readOoms(dir: string): OomRecord[];
export function recordSpawn(dir: string, pid: number, argv: string[]): void;
export function readSpawns(dir: string): { at: number; pid: number; argv: string[] }[];

// The fake tools bound to a GPU directory: returns the wrapper's path (for NVIDIA_SMI).
export function installNvidiaSmi(dir: string, opts?: { env?: Record<string, string> }): string;
export function installRocmSmi(dir: string, opts?: { env?: Record<string, string> }): string;
