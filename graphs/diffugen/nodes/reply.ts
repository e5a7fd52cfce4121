import { progressIn } from "../../../src/events/progress-event.js";
import { nodeKit, type NodeRuntime } from "../node-kit.js";
import { status } from "../progress.js";
import type { DiffugenStateUpdate, DiffugenStateValue } from "../state.js";

/** reply: the user did not ask for a picture; hand over the LLM's answer. */
export async function reply(state: DiffugenStateValue, runtime: NodeRuntime): Promise<DiffugenStateUpdate> {
  const kit = nodeKit("reply", state, runtime);
  const text = state.replyText ?? "";
  kit.emit({ kind: "reply", phase: "complete", progress: progressIn("complete"), message: "Reply ready", text, at: Date.now() });
  kit.emit(status("complete", "Done", 1));
  return { timings: kit.timed() };
}
