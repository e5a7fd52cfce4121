/**
 * Whether a chat message is a client's background task rather than the user talking:
 * OpenWebUI sends its title, tags, follow-up, search-query, autocomplete and image-prompt
 * requests to the task model (which may be DiffuGen) as one user message that is a
 * rendered template (REFERENCE.md §4). Every default template opens with `### Task:` and
 * quotes the conversation inside `<chat_history>` … `</chat_history>`.
 *
 * Such a message must be answered in words, never drawn: it quotes the conversation, and
 * a conversation about pictures says "draw" all over. Both marks are required, so a user
 * who merely starts a message with "### Task:" is still heard as a user.
 */
export function isBackgroundTask(message: string): boolean {
  const text = message.trimStart();
  if (!/^#{3}\s*Task:/i.test(text)) return false;
  const open = text.indexOf("<chat_history>");
  return open >= 0 && text.indexOf("</chat_history>", open) > open;
}
