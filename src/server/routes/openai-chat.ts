import { randomBytes } from "node:crypto";
import { Hono } from "hono";
import { z } from "zod";
import type { JobOutcome } from "../../jobs/index.js";
import type { ConversationTurnValue } from "../../../graphs/diffugen/state.js";
import { apiErrorFromRun, invalidRequest, type ApiError, type ParamNames } from "../errors.js";
import {
  chatChunk,
  chatCompletion,
  describeForStatus,
  describeParams,
  imageDataUrl,
  imageMarkdown,
  previousPromptIn,
  reasoningForParams,
  reasoningForRefined,
  roughTokens,
  statusChunk,
  usageChunk,
  withoutImages,
  type ChatUsage,
  type ChunkMeta,
  type ImageUrlPart,
} from "../format/chat-completions.js";
import { admit, extrasToRequest, generationExtras, imageModelOf, openaiImageParams } from "../generation-fields.js";
import { flag, parseSize, readJson, sizeSchema } from "../http-input.js";
import { imageUrl, publicBaseUrl, readBase64 } from "../image-links.js";
import { startRequestJob } from "../request-job.js";
import type { AppEnv, ServerContext } from "../server-context.js";
import { sseResponse, type SseSink } from "../sse.js";
import { outcomeError } from "./openai-images.js";

/**
 * POST /v1/chat/completions: DiffuGen as a chat model that draws (OpenWebUI's main use).
 * The last user message is the request; the LLM decides between drawing and replying. A
 * drawing streams OpenWebUI status events while it works, a short reasoning block (the
 * refined prompt, model, seed), then the picture once: as `delta.images` and as a markdown
 * link whose alt text is the prompt, which is how the next turn finds it again.
 */

const contentPart = z.looseObject({ type: z.string(), text: z.string().optional() });
const chatMessage = z.looseObject({
  role: z.enum(["system", "developer", "user", "assistant", "tool", "function"]),
  content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
});

const chatBody = z.object({
  model: z.string({ error: "model is required" }).min(1),
  messages: z.array(chatMessage).min(1, { error: "messages must contain at least one message" }),
  stream: flag().optional(),
  stream_options: z.looseObject({ include_usage: flag().optional() }).nullish(),
  size: sizeSchema.optional(),
  ...generationExtras,
});
type ChatBody = z.output<typeof chatBody>;

const chatParams: ParamNames = { ...openaiImageParams, prompt: "messages" };

export function openaiChatRoutes(ctx: ServerContext) {
  return new Hono<AppEnv>().post("/chat/completions", async (c) => {
    const body = await readJson(c, chatBody);
    const conversation = readConversation(body);
    const input = admit(
      ctx,
      {
        mode: "chat",
        request: { prompt: conversation.prompt, model: imageModelOf(body.model), ...parseSize(body.size), ...extrasToRequest(body) },
        messages: conversation.history,
        previousPrompt: conversation.previousPrompt,
      },
      chatParams,
    );
    const meta: ChunkMeta = { id: `chatcmpl-${randomBytes(12).toString("hex")}`, created: Math.floor(Date.now() / 1000), model: body.model };
    const base = publicBaseUrl(c, ctx.options.publicBaseUrl);
    // With an API key a browser cannot load /images/* from markdown: link the picture
    // instead of embedding it (clients show it from `images`).
    const links: ImageLinks = { base, embed: ctx.options.apiKey === undefined };
    const promptTokens = roughTokens(conversation.allText);

    if (!body.stream) {
      const { job } = startRequestJob(c, ctx, input, { events: false });
      const answer = await answerOf(await job.outcome, links);
      return c.json(
        chatCompletion(meta, { content: answer.content, reasoning_content: answer.reasoning || undefined, images: answer.images }, usageOf(promptTokens, answer.content + answer.reasoning)),
      );
    }

    const { job, bindStream } = startRequestJob(c, ctx, input);
    return sseResponse(
      c,
      {
        heartbeatMs: ctx.options.heartbeatMs,
        log: ctx.options.log,
        ids: false,
        onError: (err, sink) => sendError(sink, meta, err instanceof Error ? err.message : String(err), "internal"),
      },
      async (sink) => {
        bindStream(sink);
        const started = Date.now();
        let reasoning = "";
        let status = "";
        const think = async (text: string) => {
          reasoning += text;
          await sink.send(chatChunk(meta, { reasoning_content: text }));
        };
        await sink.send(chatChunk(meta, { role: "assistant", content: "" }));
        for await (const item of job.events) {
          if (item.type === "progress") {
            const event = item.event;
            if (event.kind === "refined") await think(reasoningForRefined(event.prompt, event.negativePrompt, event.fellBack));
            const description = describeForStatus(event);
            if (description !== undefined && description !== status) {
              status = description;
              await sink.send(statusChunk(meta, description, false));
            }
          } else if (item.type === "node" && item.node === "refine" && item.state.intent === "draw" && item.state.model && item.state.params) {
            await think(reasoningForParams(item.state.model, item.state.params));
          } else if (item.type === "outcome") break;
        }

        const outcome = await job.outcome;
        // Cancelled while the client still listens (shutdown, POST /v1/jobs/:id/cancel): it hears why.
        if (outcome.kind === "failed" || outcome.kind === "cancelled") {
          const err = outcomeError(outcome, chatParams);
          await sink.send(statusChunk(meta, `Failed: ${err.message}`.slice(0, 160), true));
          await sendError(sink, meta, err.message, err.details.code ?? null, err);
          return;
        }
        let content: string;
        if (outcome.kind === "images") {
          // The picture goes once, in a chunk of its own; the markdown link follows as text.
          for (const image of outcome.images) await sink.send(chatChunk(meta, { images: [imageDataUrl(await readBase64(image.path))] }));
          content = imagesContent(outcome, links);
          const took = Math.round((Date.now() - started) / 100) / 10;
          await sink.send(chatChunk(meta, { content }));
          await sink.send(statusChunk(meta, `${outcome.images.length === 1 ? "Image" : `${outcome.images.length} images`} ready in ${took} s`, true));
        } else {
          content = outcome.text;
          await sink.send(chatChunk(meta, { content }));
          await sink.send(statusChunk(meta, "Done", true));
        }
        await sink.send(chatChunk(meta, {}, "stop"));
        if (body.stream_options?.include_usage) await sink.send(usageChunk(meta, usageOf(promptTokens, content + reasoning)));
        await sink.send("[DONE]");
      },
    );
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

interface ImageLinks {
  base: string;
  /** `![prompt](url)` when a browser can load the URL, `[prompt](url)` when it needs the API key. */
  embed: boolean;
}

function imagesContent(outcome: Extract<JobOutcome, { kind: "images" }>, links: ImageLinks): string {
  const prompt = outcome.refined?.prompt ?? outcome.params.prompt;
  const pictures = outcome.images.map((image) => imageMarkdown(prompt, imageUrl(links.base, image.path), { embed: links.embed }));
  return `${pictures.join("\n\n")}\n\n*${describeParams(outcome.model, outcome.params)}*`;
}

async function answerOf(outcome: JobOutcome, links: ImageLinks): Promise<{ content: string; reasoning: string; images?: ImageUrlPart[] }> {
  switch (outcome.kind) {
    case "images": {
      const refined = outcome.refined;
      const reasoning =
        (refined ? reasoningForRefined(refined.prompt, refined.negativePrompt, refined.fellBack) : "") + reasoningForParams(outcome.model, outcome.params);
      const images = await Promise.all(outcome.images.map(async (image) => imageDataUrl(await readBase64(image.path))));
      return { content: imagesContent(outcome, links), reasoning, images };
    }
    case "reply":
      return { content: outcome.text, reasoning: "" };
    case "failed":
      throw apiErrorFromRun(outcome.error, { params: chatParams });
    case "cancelled":
      throw outcomeError(outcome, chatParams);
  }
}

function usageOf(promptTokens: number, completion: string): ChatUsage {
  const completionTokens = roughTokens(completion);
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** An error mid-stream, as OpenAI sends one (the SDK throws it; OpenWebUI shows it), then the end. */
async function sendError(sink: SseSink, meta: ChunkMeta, message: string, code: string | null, err?: ApiError): Promise<void> {
  await sink.send({ id: meta.id, object: "chat.completion.chunk", error: { message, type: err?.details.type ?? "server_error", param: err?.details.param ?? null, code } });
  await sink.send("[DONE]");
}
