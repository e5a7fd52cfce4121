/**
 * OpenWebUI's background task requests, as it sends them to its task model (which may be
 * `diffugen`): backend/open_webui/routers/tasks.py renders a DEFAULT_*_PROMPT_TEMPLATE of
 * config.py into ONE user message and posts it as a chat completion, `stream: false`
 * (its `metadata` is popped before the request leaves, routers/openai.py). The templates
 * are written here in our own words where their wording does not matter; what matters is
 * kept: each opens with `### Task:` and its first instruction line, and quotes the
 * conversation inside `<chat_history>` … `</chat_history>` as {{MESSAGES:END:n}} renders
 * it, one `ROLE: text` line per message.
 */

export type TaskName = "title" | "tags" | "follow_ups" | "queries" | "autocomplete" | "image_prompt";

/** The conversation the tasks quote: the user asked for a picture, and got one. */
export const conversation = [
  { role: "user", content: "draw a red fox" },
  { role: "assistant", content: "![a red fox in the snow, highly detailed](http://diffugen:5199/images/job-1-0.png)" },
] as const;

/** {{MESSAGES:END:n}}: the last n messages, `USER: …` / `ASSISTANT: …`. */
function history(last: number): string {
  return conversation
    .slice(-last)
    .map((m) => `${m.role.toUpperCase()}: ${m.content}`)
    .join("\n");
}

const templates: Record<TaskName, string> = {
  title: `### Task:
Generate a concise, 3-5 word title with an emoji summarizing the chat history.
### Guidelines:
- Capture the main subject of the conversation.
- Use the chat's own language; English if unsure.
### Output:
JSON format: { "title": "your concise title here" }
### Chat History:
<chat_history>
${history(2)}
</chat_history>`,
  tags: `### Task:
Generate 1-3 broad tags categorizing the main themes of the chat history, along with 1-3 more specific subtopic tags.
### Guidelines:
- Start with broad domains, then narrower subtopics.
- Prefer the chat's own language.
### Output:
JSON format: { "tags": ["tag1", "tag2", "tag3"] }
### Chat History:
<chat_history>
${history(6)}
</chat_history>`,
  follow_ups: `### Task:
Suggest 3-5 relevant follow-up questions or prompts that the user might naturally ask next in this conversation as a **user**, based on the chat history, to help continue or deepen the discussion.
### Guidelines:
- Write each from the user's point of view, short and specific.
### Output:
JSON format: { "follow_ups": ["Question 1?", "Question 2?", "Question 3?"] }
### Chat History:
<chat_history>
${history(6)}
</chat_history>`,
  queries: `### Task:
Analyze the chat history to determine the necessity of generating search queries, in the given language.
### Guidelines:
- Return an empty list when no search is useful.
### Output:
Strictly return in JSON format:
{ "queries": ["query1", "query2"] }
### Chat History:
<chat_history>
${history(6)}
</chat_history>`,
  autocomplete: `### Task:
You are an autocompletion system. Continue the text in \`<text>\` based on the **completion type** in \`<type>\` and the given language.
### Instructions:
- Continue naturally from where the text stops; do not repeat it.
### Output Rules:
Respond with JSON: { "text": "<your_completion>" }
### Context:
<chat_history>
${history(6)}
</chat_history>
<type>General</type>
<text>now draw it in</text>
#### Output:`,
  image_prompt: `### Task:
Generate a detailed prompt for am image generation task based on the given language and context.
### Guidelines:
- Describe the scene, the subject, the style and the lighting.
### Output:
Strictly return in JSON format:
{ "prompt": "Your detailed description here." }
### Chat History:
<chat_history>
${history(6)}
</chat_history>`,
};

export const taskNames = Object.keys(templates) as TaskName[];

/** The one user message of a task request. */
export function taskMessage(task: TaskName): string {
  return templates[task];
}

/** The body OpenWebUI posts to /chat/completions of an OpenAI connection for `task`. */
export function taskRequest(task: TaskName, options: { stream?: boolean } = {}): Record<string, unknown> {
  return {
    model: "diffugen",
    messages: [{ role: "user", content: templates[task] }],
    stream: options.stream ?? false,
    // Only the title asks for a limit (max_tokens for Ollama models, this for OpenAI ones).
    ...(task === "title" ? { max_completion_tokens: 1000 } : {}),
  };
}

/** What a helpful task model answers each task with (the JSON its template asks for). */
export const taskAnswers: Record<TaskName, string> = {
  title: '{ "title": "🦊 Red Fox Drawing" }',
  tags: '{ "tags": ["Art", "Animals", "Foxes"] }',
  follow_ups: '{ "follow_ups": ["Can you make it night?", "Can you add a forest?", "Can you draw two foxes?"] }',
  queries: '{ "queries": [] }',
  autocomplete: '{ "text": "the style of a watercolour" }',
  image_prompt: '{ "prompt": "A red fox standing in fresh snow, soft winter light, highly detailed" }',
};

/** Which task a rendered message is, by its first instruction line. */
export function taskOf(message: string): TaskName | undefined {
  return taskNames.find((task) => message.startsWith(templates[task].split("\n").slice(0, 2).join("\n")));
}
