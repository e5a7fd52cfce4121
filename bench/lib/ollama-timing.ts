/**
 * How long the fake Ollama takes, set like the real one on the reference box (8 GB GPU,
 * a small Qwen) so the benches see the same waits the service would.
 *
 * - unloadLingerMs: REFERENCE.md §2: Ollama's unload call only marks the runner expired
 *   and returns; a background loop stops the runner later, and waits up to ~5 s for the
 *   VRAM to recover. So /api/ps keeps listing the model for a while after the call: a few
 *   hundred ms when the runner stops at once (200 ms here), up to ~5 s at the slow end,
 *   which unload-confirm.ts measures too.
 * - loadMs: loading a small Qwen into VRAM again takes ~1.5 s.
 * - chatDelayMs: a short structured refinement answer from a 3B model, ~250 ms.
 */
export const realOllama = { unloadLingerMs: 200, loadMs: 1500, chatDelayMs: 250 } as const;

/** The slow end of Ollama's unload (REFERENCE.md §2: up to ~5 s). */
export const slowUnloadLingerMs = 5000;
