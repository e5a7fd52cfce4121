import type { DrawingParams, ProgressEvent } from "../../events/progress-event.js";

/**
 * ProgressEvent → OpenAI chat completion chunks, with OpenWebUI's extensions
 * (REFERENCE.md §4): a top-level `event` of type `status` for its status line,
 * `delta.reasoning_content` for the collapsible thinking block, `delta.images` for the
 * picture. Progress chunks stay small; the picture goes once, in a chunk of its own.
 */

export interface ChunkMeta {
  id: string;
  created: number;
  model: string;
}

export interface ImageUrlPart {
  type: "image_url";
  image_url: { url: string };
}

export interface ChatDelta {
  role?: "assistant";
  content?: string;
  reasoning_content?: string;
  images?: ImageUrlPart[];
}

export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function chatChunk(meta: ChunkMeta, delta: ChatDelta, finishReason: "stop" | null = null) {
  return {
    id: meta.id,
    object: "chat.completion.chunk" as const,
    created: meta.created,
    model: meta.model,
    choices: [{ index: 0, delta, finish_reason: finishReason }],
  };
}

/** OpenWebUI shows `description` in its status line; `done: true` settles it. */
export function statusChunk(meta: ChunkMeta, description: string, done: boolean) {
  return { ...chatChunk(meta, {}), event: { type: "status" as const, data: { description, done } } };
}

export function usageChunk(meta: ChunkMeta, usage: ChatUsage) {
  return { id: meta.id, object: "chat.completion.chunk" as const, created: meta.created, model: meta.model, choices: [], usage };
}

export function chatCompletion(meta: ChunkMeta, message: { content: string; reasoning_content?: string | undefined; images?: ImageUrlPart[] | undefined }, usage: ChatUsage) {
  return {
    id: meta.id,
    object: "chat.completion" as const,
    created: meta.created,
    model: meta.model,
    choices: [{ index: 0, message: { role: "assistant" as const, ...message }, finish_reason: "stop" as const, logprobs: null }],
    usage,
  };
}

export const maxStatusLength = 160;

/** The status-line text for an event, or undefined for events shown another way. */
export function describeForStatus(event: ProgressEvent): string | undefined {
  switch (event.kind) {
    case "status": {
      const step = event.step;
      // Tensor loading ticks hundreds of times: one line for it, not one per tick.
      if (!step) return clip(event.message.replace(/^(Loading model weights)\s+\d+\/\d+$/, "$1"));
      const image = step.image && step.image.count > 1 ? ` (image ${step.image.index}/${step.image.count})` : "";
      const eta = step.etaSeconds === undefined ? "" : `, ${Math.ceil(step.etaSeconds)} s left`;
      return `Sampling ${step.current}/${step.total}${image}${eta}`;
    }
    case "warning":
    case "refined":
      return clip(event.message);
    default:
      return undefined;
  }
}

function clip(text: string): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length <= maxStatusLength ? line : `${line.slice(0, maxStatusLength - 1)}…`;
}

export function reasoningForRefined(prompt: string, negativePrompt: string, fellBack: boolean): string {
  const lines = [fellBack ? `Prompt (as you wrote it): ${prompt}` : `Prompt: ${prompt}`];
  if (negativePrompt.trim() !== "") lines.push(`Negative prompt: ${negativePrompt}`);
  return lines.join("\n") + "\n";
}

export function describeParams(model: string, params: DrawingParams): string {
  const parts = [
    model,
    `${params.width}×${params.height}`,
    `${params.steps} steps`,
    `cfg ${params.cfgScale}`,
    params.samplingMethod,
    `seed ${params.seed}`,
  ];
  if (params.batchCount > 1) parts.push(`${params.batchCount} images`);
  if (params.strength !== undefined) parts.push(`strength ${params.strength}`);
  return parts.join(" · ");
}

export function reasoningForParams(model: string, params: DrawingParams): string {
  return `Model: ${describeParams(model, params)}\n`;
}

export function imageDataUrl(b64: string): ImageUrlPart {
  return { type: "image_url", image_url: { url: `data:image/png;base64,${b64}` } };
}

/**
 * A markdown image whose alt text is the prompt that drew it. That is where the next
 * request finds the previous picture's prompt ("now make it darker"): the conversation
 * comes back with every request, so nothing has to be stored here. `embed: false` writes
 * a plain link instead (`[prompt](url)`), for URLs a browser cannot load by itself (behind
 * the API key); it carries the prompt just the same.
 */
export function imageMarkdown(prompt: string, url: string, options: { embed?: boolean } = {}): string {
  const alt = prompt.replace(/\s+/g, " ").trim().replace(/[\\[\]]/g, (ch) => `\\${ch}`);
  return `${options.embed === false ? "" : "!"}[${alt}](${url})`;
}

/** A markdown image or link: `!` (or nothing), the alt/link text, the URL. */
const markdownPicture = /(!?)\[((?:\\[\s\S]|[^\\\]])*)\]\(\s*([^)\s]+)(?:\s+"[^"]*")?\s*\)/g;
/** A generated image this server links to. */
const ourImageUrl = /\/images\/[^/]+$/;

/** The prompt of the last picture this server put into the conversation, if any. */
export function previousPromptIn(assistantTexts: readonly string[]): string | undefined {
  for (let i = assistantTexts.length - 1; i >= 0; i--) {
    const matches = [...(assistantTexts[i] ?? "").matchAll(markdownPicture)].filter((m) => ourImageUrl.test(m[3] ?? ""));
    const alt = matches.at(-1)?.[2];
    if (alt !== undefined) {
      const prompt = alt.replace(/\\([\s\S])/g, "$1").trim();
      if (prompt !== "") return prompt;
    }
  }
  return undefined;
}

/** Removes pictures (and links to ours) from a message before the LLM sees it: it reads prompts, not URLs. */
export function withoutImages(text: string): string {
  return text
    .replace(markdownPicture, (m, bang: string, alt: string, url: string) =>
      bang === "!" || ourImageUrl.test(url) ? `[picture: ${alt.replace(/\\([\s\S])/g, "$1")}]` : m,
    )
    .replace(/data:image\/[a-z+]+;base64,[A-Za-z0-9+/=]+/g, "[image data]");
}

/** A rough token count (about four characters a token): clients only display it. */
export function roughTokens(text: string): number {
  return Math.ceil(text.length / 4);
}
