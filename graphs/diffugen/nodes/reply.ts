import { progressIn } from "../../../src/events/progress-event.js";
import type { Reply } from "../../../src/llm/chat-replier.js";
import { withLlm } from "../llm-lease.js";
import { nodeKit, type NodeRuntime } from "../node-kit.js";
import { replyPiece, status, warning } from "../progress.js";
import type { DiffugenStateUpdate, DiffugenStateValue } from "../state.js";

/**
 * reply: answer in words, each piece sent on as the LLM writes it, holding the LLM lease
 * `refine` kept (a background task takes one here). A background task is answered as
 * written, with no voice of ours: its message says exactly what it wants back. When the
 * LLM could not even be asked, `refine` has written the apology already.
 */
export async function reply(state: DiffugenStateValue, runtime: NodeRuntime): Promise<DiffugenStateUpdate> {
  const kit = nodeKit("reply", state, runtime);
  const warnings = [...state.warnings];
  let text = state.replyText;
  if (text === undefined) {
    let answer: Reply;
    try {
      answer = await withLlm(kit, runtime.signal, () =>
        kit.deps.replier.reply(
          { request: state.request.prompt, history: state.messages, voice: state.intent === "task" ? "as-written" : "chat" },
          { signal: runtime.signal, onText: (piece) => kit.emit(replyPiece(piece)) },
        ),
      );
    } catch (err) {
      kit.throwIfCancelled();
      return { ...kit.fail(err), warnings };
    }
    text = answer.text;
    if (answer.warning) {
      warnings.push(answer.warning);
      kit.emit(warning("refining", answer.warning));
    }
  }
  kit.emit({ kind: "reply", phase: "complete", progress: progressIn("complete"), message: "Reply ready", text, at: Date.now() });
  kit.emit(status("complete", "Done", 1));
  return { replyText: text, warnings, timings: kit.timed() };
}
