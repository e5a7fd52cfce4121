import { messageOf, type RunFormatter } from "./stream-formatter.js";

/**
 * The graph's own stream (POST /v1/graph/stream): each LangGraph chunk untouched, as
 * `event: <mode>`; `event: end` with `{jobId, outcome}` once the whole run is over (the
 * LLM reload included). An unexpected failure sends `event: error`, then the end with no
 * outcome. Messages are counted (`id:` 1, 2, ...): chunks are not job events.
 */
export function graphRunStream(jobId: string): RunFormatter {
  return {
    ends: "when-finished",
    ids: true,
    chunk: (mode, chunk) => [{ data: chunk, event: mode }],
    finished: ({ outcome }) => [{ data: { jobId, outcome }, event: "end" }],
    failure: (err) => [
      { data: { error: messageOf(err) }, event: "error" },
      { data: { jobId, outcome: null }, event: "end" },
    ],
  };
}
