import type { ApiError, ParamNames } from "../errors.js";
import { imagesContent, usageOf, type ChatImageLinks } from "./chat-answer.js";
import {
  chatChunk,
  describeForStatus,
  imageDataUrl,
  maxStatusLength,
  reasoningForParams,
  reasoningForRefined,
  statusChunk,
  usageChunk,
  type ChunkMeta,
} from "./chat-completions.js";
import { base64Of, outcomeError } from "./outcomes.js";
import { messageOf, type AnswerFormatter, type Frame } from "./stream-formatter.js";

/**
 * The chat stream, as OpenWebUI shows it: the assistant's role first, OpenWebUI status
 * events while the job works (a line only when it changes), a short reasoning block (the
 * prompt that will draw, then the model and parameters), then the picture once, in a
 * chunk of its own, and the markdown link as text; `stop`, usage if asked, `[DONE]`. A
 * reply in words goes out piece by piece as the LLM writes it, and is not sent again at
 * the end. A failure settles the status line and ends with an error chunk the SDK throws on.
 */

export interface ChatStreamOptions {
  meta: ChunkMeta;
  links: ChatImageLinks;
  /** `stream_options.include_usage`. */
  includeUsage: boolean;
  promptTokens: number;
  /** The route's names for request fields, for errors. */
  params: ParamNames;
  /** Epoch milliseconds (tests pin it): how long the picture took. */
  clock?: () => number;
}

export function chatStream(options: ChatStreamOptions): AnswerFormatter {
  const { meta } = options;
  const clock = options.clock ?? Date.now;
  const started = clock();
  let reasoning = "";
  let status = "";
  /** The reply's words sent so far, piece by piece. */
  let said = "";
  const think = (text: string): Frame => {
    reasoning += text;
    return { data: chatChunk(meta, { reasoning_content: text }) };
  };
  /** The end: `content` is the whole answer, of which `said` has gone out already. */
  const done = (content: string, statusLine: string): Frame[] => {
    const rest = content.startsWith(said) ? content.slice(said.length) : "";
    return [
      ...(rest === "" && said !== "" ? [] : [{ data: chatChunk(meta, { content: rest }) }]),
      { data: statusChunk(meta, statusLine, true) },
      { data: chatChunk(meta, {}, "stop") },
      ...(options.includeUsage ? [{ data: usageChunk(meta, usageOf(options.promptTokens, content + reasoning)) }] : []),
      { data: "[DONE]" },
    ];
  };
  return {
    ends: "at-answer",
    ids: false,
    needsImageData: true,
    start: () => [{ data: chatChunk(meta, { role: "assistant", content: "" }) }],
    progress(event) {
      if (event.kind === "reply_delta") {
        said += event.text;
        return [{ data: chatChunk(meta, { content: event.text }) }];
      }
      const frames: Frame[] = [];
      if (event.kind === "refined") frames.push(think(reasoningForRefined(event.prompt, event.negativePrompt, event.fellBack)));
      if (event.kind === "params") frames.push(think(reasoningForParams(event.model, event.params)));
      const description = describeForStatus(event);
      if (description !== undefined && description !== status) {
        status = description;
        frames.push({ data: statusChunk(meta, description, false) });
      }
      return frames;
    },
    outcome(outcome, _seq, images) {
      switch (outcome.kind) {
        // Cancelled while the client still listens (shutdown, POST /v1/jobs/:id/cancel): it hears why.
        case "failed":
        case "cancelled": {
          const err = outcomeError(outcome, options.params);
          return [{ data: statusChunk(meta, `Failed: ${err.message}`.slice(0, maxStatusLength), true) }, ...errorFrames(meta, err.message, err.details.code ?? null, err)];
        }
        case "images": {
          const count = outcome.images.length;
          const took = Math.round((clock() - started) / 100) / 10;
          return [
            ...outcome.images.map((_, i) => ({ data: chatChunk(meta, { images: [imageDataUrl(base64Of(images, i))] }) })),
            ...done(imagesContent(outcome, options.links), `${count === 1 ? "Image" : `${count} images`} ready in ${took} s`),
          ];
        }
        case "reply":
          return done(outcome.text, "Done");
      }
    },
    failure(err) {
      return errorFrames(meta, messageOf(err), "internal");
    },
  };
}

/** An error mid-stream, as OpenAI sends one (the SDK throws it; OpenWebUI shows it), then the end. */
function errorFrames(meta: ChunkMeta, message: string, code: string | null, err?: ApiError): Frame[] {
  return [
    { data: { id: meta.id, object: "chat.completion.chunk", error: { message, type: err?.details.type ?? "server_error", param: err?.details.param ?? null, code } } },
    { data: "[DONE]" },
  ];
}
