import type { JobOutcome } from "../../jobs/index.js";
import type { ParamNames } from "../errors.js";
import type { ImageLinks } from "../image-links.js";
import {
  chatCompletion,
  describeParams,
  imageDataUrl,
  imageMarkdown,
  reasoningForParams,
  reasoningForRefined,
  roughTokens,
  type ChatUsage,
  type ChunkMeta,
  type ImageUrlPart,
} from "./chat-completions.js";
import { base64Of, outcomeError, type ImagesOutcome } from "./outcomes.js";
import type { ImageData } from "./stream-formatter.js";

/** How the chat answer links its pictures. */
export interface ChatImageLinks extends ImageLinks {
  /**
   * `![prompt](url)` when a browser can load the URL (no API_KEY, or signed links), `[prompt](url)`
   * when it needs the key (API_KEY set with IMAGE_URL_TTL_S=0).
   */
  embed: boolean;
}

/** The answer's text for a drawing: the pictures (their alt text the prompt that drew), then what drew them. */
export function imagesContent(outcome: ImagesOutcome, links: ChatImageLinks): string {
  const pictures = outcome.images.map((image) => imageMarkdown(outcome.prompt, links.image(image.path), { embed: links.embed }));
  return `${pictures.join("\n\n")}\n\n*${describeParams(outcome.model, outcome.params)}*`;
}

export function usageOf(promptTokens: number, completion: string): ChatUsage {
  const completionTokens = roughTokens(completion);
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

export interface ChatAnswerOptions {
  meta: ChunkMeta;
  links: ChatImageLinks;
  promptTokens: number;
  /** The base64 of each image (a drawing). */
  images: ImageData;
  /** The route's names for request fields, for errors. */
  params: ParamNames;
}

/** The one chat.completion of a request without `stream`; a failure or a cancel throws its API error. */
export function chatAnswer(outcome: JobOutcome, options: ChatAnswerOptions) {
  let content: string;
  let reasoning = "";
  let images: ImageUrlPart[] | undefined;
  switch (outcome.kind) {
    case "images": {
      const refined = outcome.refined;
      reasoning = (refined ? reasoningForRefined(refined.prompt, refined.negativePrompt, refined.fellBack) : "") + reasoningForParams(outcome.model, outcome.params);
      images = outcome.images.map((_, i) => imageDataUrl(base64Of(options.images, i)));
      content = imagesContent(outcome, options.links);
      break;
    }
    case "reply":
      content = outcome.text;
      break;
    case "failed":
    case "cancelled":
      throw outcomeError(outcome, options.params);
  }
  return chatCompletion(options.meta, { content, reasoning_content: reasoning || undefined, images }, usageOf(options.promptTokens, content + reasoning));
}
