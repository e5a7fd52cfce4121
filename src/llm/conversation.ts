import { AIMessage, HumanMessage, SystemMessage, type BaseMessage } from "@langchain/core/messages";

/**
 * A chat turn as the LLM is shown it: a system prompt of ours (if any), the conversation
 * so far (the latest turns, each cut to a sane length) and the request. Shared by the prompt
 * refiner and the chat replier, so both see the same conversation.
 */

export interface ConversationTurn {
  role: "user" | "assistant" | "system";
  content: string;
}

const MAX_TURN_CHARS = 2_000;

export function conversationMessages(
  system: string | undefined,
  history: readonly ConversationTurn[] | undefined,
  request: string,
  maxTurns: number,
): BaseMessage[] {
  const turns = [...(history ?? [])].filter((t) => t.content.trim() !== "");
  const last = turns.at(-1);
  // The caller may pass the conversation including the current message: send it once.
  if (last?.role === "user" && last.content.trim() === request.trim()) turns.pop();
  const shown = turns.slice(-maxTurns).map((t) => {
    const content = t.content.length > MAX_TURN_CHARS ? `${t.content.slice(0, MAX_TURN_CHARS)}…` : t.content;
    return t.role === "assistant" ? new AIMessage(content) : t.role === "system" ? new SystemMessage(content) : new HumanMessage(content);
  });
  return [...(system === undefined ? [] : [new SystemMessage(system)]), ...shown, new HumanMessage(request)];
}
