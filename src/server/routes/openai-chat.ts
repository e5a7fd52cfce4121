import { randomBytes } from "node:crypto";
import { Hono } from "hono";
import { z } from "zod";
import type { ConversationTurnValue } from "../../../graphs/diffugen/state.js";
import { invalidRequest } from "../errors.js";
import { admit } from "../fields/admit.js";
import { field, filledByRoute, option, paramNamesOf, requestOf, shapeOf, type FieldTable } from "../fields/field-table.js";
import { imageModelOf, openaiGenerationFields, sizeField } from "../fields/openai-fields.js";
import { chatAnswer, type ChatImageLinks } from "../format/chat-answer.js";
import { previousPromptIn, roughTokens, withoutImages, type ChunkMeta } from "../format/chat-completions.js";
import { chatStream } from "../format/chat-stream.js";
import { flag, readJson } from "../http-input.js";
import { linksFor } from "../image-links.js";
import { imageDataOf, startRequestJob } from "../request-job.js";
import type { AppEnv, ServerContext } from "../server-context.js";
import { streamJob } from "../sse.js";

/**
 * POST /v1/chat/completions: DiffuGen as a chat model that draws (OpenWebUI's main use).
 * The last user message is the request; the LLM decides between drawing and replying. A
 * drawing streams OpenWebUI status events while it works, a short reasoning block (the
 * refined prompt, model, seed), then the picture once: as `delta.images` and as a markdown
 * link whose alt text is the prompt, which is how the next turn finds it again. A reply
 * streams its words as the LLM writes them. OpenWebUI's background tasks (title, tags,
 * follow-ups... sent to its task model, which may be this one) are answered in words,
 * never drawn: the graph's refine recognises them (src/llm/background-task.ts).
 */

const contentPart = z.looseObject({ type: z.string(), text: z.string().optional() });
const chatMessage = z.looseObject({
  role: z.enum(["system", "developer", "user", "assistant", "tool", "function"]),
  content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
});

/** The chat's fields: OpenAI's, the size, and the same diffusion extras as the image routes. */
const chatFields = {
  model: field(z.string({ error: "model is required" }).min(1), ["model"], (model) => ({ model: imageModelOf(model) })),
  // The prompt is the last user message (readConversation).
  messages: filledByRoute(z.array(chatMessage).min(1, { error: "messages must contain at least one message" }), ["prompt"]),
  stream: option(flag().optional()),
  stream_options: option(z.looseObject({ include_usage: flag().optional() }).nullish()),
  size: sizeField,
  ...openaiGenerationFields,
} satisfies FieldTable;

const chatBody = z.object(shapeOf(chatFields));
type ChatBody = z.output<typeof chatBody>;

const chatParams = paramNamesOf(chatFields);

export function openaiChatRoutes(ctx: ServerContext) {
  return new Hono<AppEnv>().post("/chat/completions", async (c) => {
    const body = await readJson(c, chatBody);
    const conversation = readConversation(body);
    const input = admit(
      ctx,
      {
        mode: "chat",
        request: { ...requestOf(chatFields, body), prompt: conversation.prompt },
        messages: conversation.history,
        previousPrompt: conversation.previousPrompt,
      },
      chatParams,
    );
    const meta: ChunkMeta = { id: `chatcmpl-${randomBytes(12).toString("hex")}`, created: Math.floor(Date.now() / 1000), model: body.model };
    // A browser loads `![](url)` with no header: embedded when the link needs no key (none
    // set, or the link is signed); with API_KEY and IMAGE_URL_TTL_S=0, linked instead
    // (clients show the picture from `images`).
    const links: ChatImageLinks = { ...linksFor(c, ctx), embed: ctx.options.apiKey === undefined || ctx.imageSigner !== undefined };
    const promptTokens = roughTokens(conversation.allText);

    if (!body.stream) {
      const { job } = startRequestJob(c, ctx, input, { events: false });
      const outcome = await job.outcome;
      return c.json(chatAnswer(outcome, { meta, links, promptTokens, images: await imageDataOf(outcome), params: chatParams }));
    }

    const started = startRequestJob(c, ctx, input);
    const formatter = chatStream({ meta, links, includeUsage: body.stream_options?.include_usage ?? false, promptTokens, params: chatParams });
    return streamJob(c, started, formatter, ctx.options);
  });
}

interface Conversation {
  prompt: string;
  history: ConversationTurnValue[];
  previousPrompt: string | undefined;
  allText: string;
}

function textOf(content: ChatBody["messages"][number]["content"]): string {
  if (typeof content === "string") return content;
  if (!content) return "";
  return content
    .filter((part) => part.type === "text" && typeof part.text === "string")
    .map((part) => part.text)
    .join("\n");
}

/** The last user message is the request; what came before is context. */
function readConversation(body: ChatBody): Conversation {
  const messages = body.messages;
  let last = -1;
  for (let i = messages.length - 1; i >= 0; i--) {
    if (messages[i]!.role === "user") {
      last = i;
      break;
    }
  }
  if (last < 0) throw invalidRequest("messages must contain a user message", "messages");
  const prompt = textOf(messages[last]!.content).trim();
  if (prompt === "") throw invalidRequest("the last user message has no text", `messages[${last}].content`);
  const earlier = messages.slice(0, last);
  const history: ConversationTurnValue[] = [];
  for (const message of earlier) {
    const text = textOf(message.content);
    if (text.trim() === "") continue;
    if (message.role === "user") history.push({ role: "user", content: text });
    else if (message.role === "assistant") history.push({ role: "assistant", content: withoutImages(text) });
    else if (message.role === "system" || message.role === "developer") history.push({ role: "system", content: text });
  }
  const assistantTexts = earlier.filter((m) => m.role === "assistant").map((m) => textOf(m.content));
  return {
    prompt,
    history,
    previousPrompt: previousPromptIn(assistantTexts),
    allText: messages.map((m) => textOf(m.content)).join("\n"),
  };
}
