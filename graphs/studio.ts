import { studioBootstrap } from "../src/bootstrap/studio.js";
import { builder } from "./diffugen.js";
import { createRunContext, isRunContext } from "./diffugen/run-context.js";

/**
 * The graph as LangGraph Studio runs it (langgraph.json). Studio starts runs itself and
 * passes no run context, so this graph makes one for each run: the dev server's
 * capabilities (src/bootstrap/studio.ts, shared with the HTTP app it mounts) and the
 * signal Studio gives the run. `stream` is the one door every way of running a graph goes
 * through (invoke and streamEvents call it), so that is where the context is added.
 */
const compiled = builder.compile();
const stream = compiled.stream.bind(compiled);
compiled.stream = ((input, options) =>
  stream(input, {
    ...options,
    context: isRunContext(options?.context) ? options.context : createRunContext(studioBootstrap().deps, options?.signal ?? undefined),
  })) as typeof compiled.stream;
compiled.name = "diffugen";

export const graph = compiled;
