import { randomUUID } from "node:crypto";
import { resolveGenerationParams, withPrompt, type GenerationParams } from "../../../src/diffusion/index.js";
import { isBackgroundTask, type ChatDecision, type RefinedPrompt, type RefineInput } from "../../../src/llm/index.js";
import type { ModelEntry } from "../../../src/models/index.js";
import { requestDiffusion } from "../diffusion-request.js";
import { withLlm } from "../llm-lease.js";
import { nodeKit, type NodeKit, type NodeRuntime } from "../node-kit.js";
import { drawingWith, seconds, status, warning } from "../progress.js";
import type { DiffugenStateUpdate, DiffugenStateValue } from "../state.js";

/**
 * refine: let the LLM turn the request into a good prompt (image mode) or decide between
 * drawing and replying (chat mode). A reply keeps the LLM lease for `reply`, which writes
 * the words. A client's background task (OpenWebUI's title, tags...) is answered in words
 * without asking: it quotes the conversation, whose "draw a red fox" is no request to draw.
 *
 * Once it knows the run will draw (the prompt checked), it asks the GPU scheduler for the
 * diffusion phase at once (../diffusion-request.ts): the LLM starts leaving VRAM while LangGraph
 * moves on to `unload`, which waits for the grant.
 *
 * A run started through the job runner comes with its parameters resolved at admission
 * (in its run context); a run without them (LangGraph Studio's) is checked here, before
 * the LLM leaves VRAM for a request that could never be drawn.
 */
export async function refine(state: DiffugenStateValue, runtime: NodeRuntime): Promise<DiffugenStateUpdate> {
  const jobId = state.jobId ?? randomUUID();
  const kit = nodeKit("refine", { ...state, jobId, timings: {} }, runtime);
  // A thread may run the graph again: start from a clean slate but keep the request.
  const fresh: DiffugenStateUpdate = {
    jobId,
    images: [],
    warnings: [],
    error: undefined,
    refined: undefined,
    intent: undefined,
    replyText: undefined,
  };

  if (state.mode === "chat" && isBackgroundTask(state.request.prompt)) {
    kit.emit(status("refining", "A background task of the client: answering it in words", 1));
    return { ...fresh, intent: "task", timings: kit.timed() };
  }

  let entry: ModelEntry;
  let params: GenerationParams;
  try {
    if (kit.admitted) {
      entry = kit.deps.registry.resolve(kit.admitted.model);
      params = kit.admitted.params;
    } else {
      entry = kit.deps.registry.resolve(state.request.model);
      params = resolveGenerationParams(state.request, entry);
      if (state.mode === "image") kit.deps.registry.assertFilesPresent(entry);
    }
  } catch (err) {
    return { ...fresh, ...kit.fail(err) };
  }
  const input: RefineInput = {
    request: state.request.prompt,
    family: entry.family,
    history: state.messages,
    previousPrompt: state.previousPrompt,
    negativePrompt: state.request.negativePrompt,
  };

  if (state.mode === "image" && !state.refinePrompt) {
    const refined = { prompt: params.prompt, negativePrompt: params.negativePrompt, fellBack: false };
    // First: the unload's requests go out before the events' bookkeeping (SQLite, streams).
    requestDiffusion(kit, { model: entry.name, params });
    kit.emit({ ...status("refining", "Using the prompt as written", 1), kind: "refined", ...refined });
    kit.emit(drawingWith(entry.name, params));
    return { ...fresh, intent: "draw", refined, model: entry.name, params, timings: kit.timed() };
  }

  let answer: ChatDecision;
  try {
    answer = await withLlm(
      kit,
      runtime.signal,
      () => {
        kit.emit(status("refining", state.mode === "chat" ? "Reading your message" : `Refining the prompt with ${kit.deps.config.llm.model}`));
        return state.mode === "chat"
          ? kit.deps.refiner.decide(input, runtime.signal)
          : kit.deps.refiner.refine(input, runtime.signal).then((r): ChatDecision => ({ intent: "draw", ...r }));
      },
      // The LLM writes the reply next: keep it for `reply`.
      (decision) => decision.intent === "reply" && decision.reply === undefined,
    );
  } catch (err) {
    kit.throwIfCancelled();
    return { ...fresh, ...kit.fail(err) };
  }
  const warnings = answer.warning ? [answer.warning] : [];
  if (answer.warning) kit.emit(warning("refining", answer.warning));

  if (answer.intent === "reply") {
    return { ...fresh, intent: "reply", replyText: answer.reply, warnings, timings: kit.timed() };
  }
  return drawWith(answer, { kit, entry, params, fresh, warnings, checkFiles: state.mode === "chat" });
}

function drawWith(
  answer: RefinedPrompt,
  ctx: { kit: NodeKit; entry: ModelEntry; params: GenerationParams; fresh: DiffugenStateUpdate; warnings: string[]; checkFiles: boolean },
): DiffugenStateUpdate {
  const { kit, entry, fresh, warnings } = ctx;
  let params: GenerationParams;
  try {
    // The words the LLM wrote are checked like the user's; every other value stays.
    params = withPrompt(ctx.params, answer.prompt, answer.negativePrompt);
    // A chat turn was admitted before anyone knew it would draw: its weights are checked now.
    if (ctx.checkFiles) kit.deps.registry.assertFilesPresent(entry);
  } catch (err) {
    return { ...fresh, ...kit.fail(err), warnings };
  }
  const refined = { prompt: params.prompt, negativePrompt: params.negativePrompt, fellBack: answer.fellBack, warning: answer.warning };
  // First: the unload's requests go out before the events' bookkeeping (SQLite, streams).
  requestDiffusion(kit, { model: entry.name, params });
  kit.emit({
    ...status("refining", answer.fellBack ? "Using your prompt as written" : `Prompt refined in ${seconds(answer.durationMs)}`, 1),
    kind: "refined",
    prompt: refined.prompt,
    negativePrompt: refined.negativePrompt,
    fellBack: refined.fellBack,
  });
  kit.emit(drawingWith(entry.name, params));
  return { ...fresh, intent: "draw", refined, model: entry.name, params, warnings, timings: kit.timed() };
}
