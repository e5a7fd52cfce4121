import { END, START, StateGraph } from "@langchain/langgraph";
import { z } from "zod";
import { diffuse } from "./diffugen/nodes/diffuse.js";
import { refine } from "./diffugen/nodes/refine.js";
import { reload } from "./diffugen/nodes/reload.js";
import { reply } from "./diffugen/nodes/reply.js";
import { unload } from "./diffugen/nodes/unload.js";
import type { DiffugenDeps } from "./diffugen/dependencies.js";
import type { LeaseSlot } from "./diffugen/run-context.js";
import { answersInWords, DiffugenState, type DiffugenStateValue } from "./diffugen/state.js";

/**
 * DiffuGen as one sentence:
 *
 *   START → refine → unload → diffuse → reload → END
 *                 ↘ reply → END            (chat: no picture asked for, or a client's background task)
 *
 * Nodes are thin: they call the LLM (refiner, replier), the GPU scheduler and the sd.cpp
 * runner in src/. Progress leaves through the custom stream as the one ProgressEvent type,
 * a reply's words among it as they are written. Every run is given a run context
 * (diffugen/run-context.ts): the capabilities, the run's signal and its GPU leases.
 */

/** After refine: answer in words, draw, or stop at a request that cannot be drawn. */
export function routeAfterRefine(state: DiffugenStateValue): "reply" | "unload" | typeof END {
  if (state.error) return END;
  return answersInWords(state.intent) ? "reply" : "unload";
}

/** After unload: without the GPU there is nothing to draw (the scheduler kept the LLM loaded). */
export function routeAfterUnload(state: DiffugenStateValue): "diffuse" | typeof END {
  return state.error ? END : "diffuse";
}

/** The run context (diffugen/run-context.ts): live objects, so only their types are declared. */
const contextSchema = z.object({
  deps: z.custom<DiffugenDeps>(),
  signal: z.custom<AbortSignal>(),
  lease: z.custom<LeaseSlot>(),
  llmLease: z.custom<LeaseSlot>(),
});

export const builder = new StateGraph(DiffugenState, contextSchema)
  .addNode("refine", refine)
  .addNode("reply", reply)
  .addNode("unload", unload)
  .addNode("diffuse", diffuse)
  .addNode("reload", reload)
  .addEdge(START, "refine")
  .addConditionalEdges("refine", routeAfterRefine, ["reply", "unload", END])
  .addEdge("reply", END)
  .addConditionalEdges("unload", routeAfterUnload, ["diffuse", END])
  // A failed diffusion still goes through reload: the LLM always comes back.
  .addEdge("diffuse", "reload")
  .addEdge("reload", END);

/** The compiled graph. Callers pass a run context; LangGraph Studio runs graphs/studio.ts's. */
export const graph = builder.compile();
graph.name = "diffugen";
