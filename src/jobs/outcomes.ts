import { answersInWords, type DiffugenStateValue, type GeneratedImage } from "../../graphs/diffugen/state.js";
import type { JobOutcome } from "./job.js";

type State = Partial<DiffugenStateValue>;

/** The answer, if this node settled it: a failure anywhere, the reply, or the saved images. */
export function outcomeAfterNode(node: string, state: State): JobOutcome | undefined {
  const warnings = state.warnings ?? [];
  if (state.error) return { kind: "failed", error: state.error, warnings };
  if (node === "reply") return { kind: "reply", text: state.replyText ?? "", warnings };
  if (node === "diffuse") return imagesOutcome(state);
  return undefined;
}

/**
 * The answer once every image the run draws has been announced (`image` events, each sent
 * by `diffuse` once its file is saved and checked), before `diffuse` has returned: the
 * client does not wait for LangGraph's next step. Undefined until the last one.
 */
export function outcomeAfterImages(state: State, announced: readonly GeneratedImage[]): JobOutcome | undefined {
  const expected = state.params?.batchCount;
  if (state.error || expected === undefined || announced.length < expected) return undefined;
  return imagesOutcome({ ...state, images: [...announced].sort((a, b) => a.index - b.index) });
}

export function outcomeOfFinalState(state: State): JobOutcome {
  const warnings = state.warnings ?? [];
  if (state.error) return { kind: "failed", error: state.error, warnings };
  if (answersInWords(state.intent)) return { kind: "reply", text: state.replyText ?? "", warnings };
  return (
    imagesOutcome(state) ?? {
      kind: "failed",
      error: { code: "internal", message: "The run ended without an image", node: "runner" },
      warnings,
    }
  );
}

function imagesOutcome(state: State): JobOutcome | undefined {
  const { images, model, params } = state;
  if (!images || images.length === 0 || !model || !params) return undefined;
  return {
    kind: "images",
    images,
    model,
    prompt: params.prompt,
    negativePrompt: params.negativePrompt,
    params,
    refined: state.refined,
    warnings: state.warnings ?? [],
  };
}
