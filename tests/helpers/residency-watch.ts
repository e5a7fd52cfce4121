import fs from "node:fs";
import { residentModels } from "../fakes/fake-gpu.mjs";

export interface ResidencyChange {
  at: number;
  /** Models listed by the Ollama double after the change. */
  models: string[];
  /** Models that left (dropped from /api/ps) with this change. */
  dropped: string[];
  /** Models that appeared with this change. */
  loaded: string[];
}

export interface ResidencyWatch {
  readonly changes: readonly ResidencyChange[];
  /** Times `model` actually left the Ollama double's /api/ps (after its linger). */
  drops(model?: string): number[];
  stop(): void;
}

/**
 * Records when the Ollama double's resident models change, by watching the simulated GPU
 * file it rewrites (tests/fakes/fake-gpu.mjs, llm-resident.json, written atomically). The
 * fake does not expose when a lingering model finally dropped; this sees it within the
 * inotify latency (well under a millisecond on Linux). A slow poll backs fs.watch up.
 */
export function watchResidency(gpuDir: string, clock: () => number = Date.now): ResidencyWatch {
  const read = () => residentModels(gpuDir);
  const changes: ResidencyChange[] = [];
  let last = read();
  const check = (): void => {
    const now = read();
    if (now.length === last.length && now.every((m, i) => m === last[i])) return;
    const at = clock();
    changes.push({ at, models: now, dropped: last.filter((m) => !now.includes(m)), loaded: now.filter((m) => !last.includes(m)) });
    last = now;
  };
  const watcher = fs.watch(gpuDir, { persistent: false }, check);
  watcher.on("error", () => {});
  const poll = setInterval(check, 25);
  poll.unref();
  return {
    changes,
    drops: (model) => changes.filter((c) => (model === undefined ? c.dropped.length > 0 : c.dropped.includes(model))).map((c) => c.at),
    stop: () => {
      watcher.close();
      clearInterval(poll);
    },
  };
}
