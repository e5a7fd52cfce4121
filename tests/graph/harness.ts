import { MemorySaver } from "@langchain/langgraph";
import { builder } from "../../graphs/diffugen.js";
import type { DiffugenDeps } from "../../graphs/diffugen/dependencies.js";
import { createRunContext } from "../../graphs/diffugen/run-context.js";
import type { DiffugenStateValue } from "../../graphs/diffugen/state.js";
import type { ProgressEvent } from "../../src/events/progress-event.js";

/**
 * The graph's tests run the real capabilities, built by bootstrap, against the doubles
 * (tests/helpers/stack.ts): the fake Ollama and the sd-cli double sharing one simulated GPU.
 */
export { sdCliDouble, startStack, type Stack, type StackOptions } from "../helpers/stack.js";

export interface RunRecord {
  events: ProgressEvent[];
  updates: Record<string, unknown>[];
  state: DiffugenStateValue;
  /** The stream's rejection, if it rejected (a cancelled run). */
  error?: unknown;
}

let thread = 0;

/**
 * Streams one run of the graph as an entry point does (updates + custom, a run context made
 * by createRunContext with the run's signal), with a checkpointer to read the final state
 * back, and returns what it saw.
 */
export async function runGraph(
  deps: DiffugenDeps,
  input: Partial<DiffugenStateValue> & Pick<DiffugenStateValue, "request">,
  options: { signal?: AbortSignal; onEvent?: (event: ProgressEvent) => void } = {},
): Promise<RunRecord> {
  const graph = builder.compile({ checkpointer: new MemorySaver() });
  const config = { configurable: { thread_id: `t${++thread}` } };
  const events: ProgressEvent[] = [];
  const updates: Record<string, unknown>[] = [];
  let error: unknown;
  try {
    const stream = await graph.stream(input, {
      ...config,
      streamMode: ["updates", "custom"],
      signal: options.signal,
      context: createRunContext(deps, options.signal),
    });
    for await (const [mode, chunk] of stream) {
      if (mode === "custom") {
        events.push(chunk as ProgressEvent);
        options.onEvent?.(chunk as ProgressEvent);
      } else updates.push(chunk as Record<string, unknown>);
    }
  } catch (err) {
    error = err;
  }
  const state = (await graph.getState(config)).values as DiffugenStateValue;
  return { events, updates, state, error };
}
