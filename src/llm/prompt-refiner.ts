import type { BaseMessage } from "@langchain/core/messages";
import type { ChatOllama } from "@langchain/ollama";
import type { z } from "zod";
import type { ModelFamily } from "../models/index.js";
import { createChatOllama } from "./chat-model.js";
import { conversationMessages, type ConversationTurn } from "./conversation.js";
import { looksLikeDrawRequest } from "./draw-intent.js";
import { describeLlmFailure, RefineTimeoutError } from "./llm-failure.js";
import type { LlmLogger } from "./logger.js";
import type { LlmConfig } from "./ollama-client.js";
import { findLoraTags, keepsSubject, restoreUserSyntax, tidyPrompt } from "./prompt-syntax.js";
import {
  CHAT_SYSTEM_PROMPT,
  FALLBACK_CHAT_REPLY,
  FALLBACK_NEGATIVE_PROMPTS,
  FAMILY_STYLES,
  FOLLOW_UP_INSTRUCTIONS,
  REFINE_SYSTEM_PROMPT,
  fillTemplate,
} from "./prompts.js";
import { chatDecisionSchema, refinedPromptSchema } from "./refinement-schema.js";

/**
 * Turns what the user typed into a prompt the image model draws well (Qwen via
 * ChatOllama, structured output), and in chat mode decides whether the user asked for
 * a picture at all (the words of a reply are written afterwards, streamed: chat-replier.ts).
 *
 * Refinement is a nicety, never a gate: when Ollama is down, slow, missing the model or
 * answering nonsense, the user's own words are used (`fellBack: true` + `warning`) and
 * the picture still gets made. Only the caller's own abort stops it.
 */

export type { ConversationTurn } from "./conversation.js";
export { RefineTimeoutError } from "./llm-failure.js";

export interface RefineInput {
  /** What the user asked for, as typed (may hold LoRA tags and weights). */
  request: string;
  family: ModelFamily;
  /** The conversation before this request, oldest first. */
  history?: ConversationTurn[] | undefined;
  /** The prompt of the previous picture, for follow-ups like "make it darker". */
  previousPrompt?: string | undefined;
  /** A negative prompt the user gave explicitly: kept as written. */
  negativePrompt?: string | undefined;
}

export interface RefinedPrompt {
  prompt: string;
  negativePrompt: string;
  /** True when the user's own prompt was used because refinement failed. */
  fellBack: boolean;
  /** Why refinement fell back (or what was repaired), for the user and the log. */
  warning?: string | undefined;
  durationMs: number;
}

export type ChatDecision =
  | (RefinedPrompt & { intent: "draw" })
  | {
      intent: "reply";
      /**
       * Only when the LLM could not be asked (`fellBack`): what to say instead, at once.
       * Otherwise the reply is the LLM's to write, streamed (ChatReplier).
       */
      reply?: string | undefined;
      fellBack: boolean;
      warning?: string | undefined;
      durationMs: number;
    };

export interface PromptRefinerOptions {
  /** Where a fallback to the user's own words is told. */
  logger: LlmLogger;
  /** Builds the chat model for one call; the default is createChatOllama. */
  createChatModel?: (llm: LlmConfig, opts: { signal: AbortSignal }) => ChatOllama;
  /** How many earlier turns of the conversation the LLM sees. Default 12. */
  maxHistoryTurns?: number;
}

const MAX_PROMPT_CHARS = 2_000;

export class PromptRefiner {
  private readonly logger: LlmLogger;
  private readonly createChatModel: (llm: LlmConfig, opts: { signal: AbortSignal }) => ChatOllama;
  private readonly maxHistoryTurns: number;

  constructor(
    private readonly llm: LlmConfig,
    options: PromptRefinerOptions,
  ) {
    this.logger = options.logger;
    this.createChatModel = options.createChatModel ?? createChatOllama;
    this.maxHistoryTurns = options.maxHistoryTurns ?? 12;
  }

  /** Rewrites the request into `{prompt, negativePrompt}` for `family`; falls back, never fails (except on abort). */
  async refine(input: RefineInput, signal?: AbortSignal): Promise<RefinedPrompt> {
    signal?.throwIfAborted();
    const started = Date.now();
    if (input.request.trim() === "" && input.previousPrompt === undefined) {
      return this.fallback(input, "the request is empty", started);
    }
    let answer: z.infer<typeof refinedPromptSchema>;
    try {
      answer = await this.ask(refinedPromptSchema, this.messages(REFINE_SYSTEM_PROMPT, input), signal);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      return this.fallback(input, this.describeFailure(err), started);
    }
    return this.finish(input, answer.prompt, answer.negative_prompt, started);
  }

  /**
   * Chat mode: does the user want a picture (then the refined prompt) or an answer in words?
   * The answer itself is not asked for here: a structured answer arrives whole, so the
   * words could not stream (ChatReplier writes them).
   */
  async decide(input: RefineInput, signal?: AbortSignal): Promise<ChatDecision> {
    signal?.throwIfAborted();
    const started = Date.now();
    const wantsPicture = () => looksLikeDrawRequest(input.request, { hasPreviousPicture: input.previousPrompt !== undefined });
    let answer: z.infer<typeof chatDecisionSchema>;
    try {
      answer = await this.ask(chatDecisionSchema, this.messages(CHAT_SYSTEM_PROMPT, input), signal);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const reason = this.describeFailure(err);
      if (wantsPicture()) return { intent: "draw", ...this.fallback(input, reason, started) };
      return this.fallbackReply(reason, started);
    }

    if (answer.intent === "draw") {
      if (answer.prompt === undefined || answer.prompt.trim() === "") {
        return { intent: "draw", ...this.fallback(input, "the LLM chose to draw but wrote no prompt", started) };
      }
      return { intent: "draw", ...this.finish(input, answer.prompt, answer.negative_prompt ?? "", started) };
    }
    return { intent: "reply", fellBack: false, durationMs: Date.now() - started };
  }

  /** One structured call with the refine timeout; rethrows the caller's abort as is. */
  private async ask<S extends z.ZodType<Record<string, unknown>>>(
    schema: S,
    messages: BaseMessage[],
    signal: AbortSignal | undefined,
  ): Promise<z.infer<S>> {
    const timeout = AbortSignal.timeout(this.llm.refineTimeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const model = this.createChatModel(this.llm, { signal: combined });
    try {
      // jsonSchema: the zod schema goes to Ollama as `format`, and the answer is parsed against it.
      const structured = model.withStructuredOutput(schema, { method: "jsonSchema" });
      return (await structured.invoke(messages, { signal: combined })) as z.infer<S>;
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (timeout.aborted) throw new RefineTimeoutError(this.llm.refineTimeoutMs);
      throw err;
    }
  }

  private messages(systemTemplate: string, input: RefineInput): BaseMessage[] {
    const family = FAMILY_STYLES[input.family];
    let system = fillTemplate(systemTemplate, { modelDescription: family.modelDescription, familyStyle: family.style });
    if (input.previousPrompt !== undefined && input.previousPrompt.trim() !== "") {
      system += fillTemplate(FOLLOW_UP_INSTRUCTIONS, { previousPrompt: input.previousPrompt.trim() });
    }
    const request = input.request.trim() === "" ? "Draw the previous picture again." : input.request.trim();
    return conversationMessages(system, input.history, request, this.maxHistoryTurns);
  }

  /** Checks and repairs the LLM's prompt; a prompt that lost the subject is not used. */
  private finish(input: RefineInput, rawPrompt: string, rawNegative: string, started: number): RefinedPrompt {
    const prompt = tidyPrompt(rawPrompt).slice(0, MAX_PROMPT_CHARS);
    if (prompt === "") return this.fallback(input, "the LLM returned an empty prompt", started);
    if (!keepsSubject(prompt, input.request, input.previousPrompt)) {
      this.logger.warn(`refined prompt "${prompt}" lost the subject of "${input.request}"; using the request`);
      return this.fallback(input, "the LLM's prompt did not keep the subject of your request", started);
    }
    const repaired = restoreUserSyntax(prompt, {
      loraFrom: input.previousPrompt === undefined ? [input.request] : [input.request, input.previousPrompt],
      emphasisFrom: input.request,
    });
    if (repaired.changes.length > 0) this.logger.info(`prompt syntax repaired: ${repaired.changes.join("; ")}`);
    return {
      prompt: repaired.text,
      negativePrompt: this.negativeFor(input, rawNegative),
      fellBack: false,
      durationMs: Date.now() - started,
    };
  }

  private negativeFor(input: RefineInput, llmNegative: string): string {
    const user = input.negativePrompt?.trim() ?? "";
    // FLUX ignores negative prompts; only an explicit one from the user is passed on.
    if (input.family === "flux") return user;
    const fromLlm = tidyPrompt(llmNegative.replace(/<lora:[^<>]+>/gi, ""));
    if (user === "") return fromLlm;
    const have = new Set(user.split(",").map((t) => t.trim().toLowerCase()));
    const extra = fromLlm.split(",").map((t) => t.trim()).filter((t) => t !== "" && !have.has(t.toLowerCase()));
    return extra.length === 0 ? user : `${user}, ${extra.join(", ")}`;
  }

  /** The user's own words (for a follow-up: the previous prompt plus the change). */
  private fallback(input: RefineInput, reason: string, started: number): RefinedPrompt {
    const request = input.request.trim();
    const previous = input.previousPrompt?.trim();
    let prompt = request;
    const isChangeOfPrevious = request === "" || (looksLikeDrawRequest(request, { hasPreviousPicture: true }) && !looksLikeDrawRequest(request));
    if (previous && isChangeOfPrevious) {
      prompt = request === "" ? previous : `${previous}, ${request}`;
      // Each LoRA tag once, with the weight the user gave it.
      if (findLoraTags(prompt).length > 0) prompt = restoreUserSyntax(prompt, { loraFrom: [request, previous], emphasisFrom: "" }).text;
    }
    const warning = `Prompt refinement skipped: ${reason}. Using your prompt as written.`;
    this.logger.warn(warning);
    return {
      prompt: tidyPrompt(prompt),
      negativePrompt: input.negativePrompt?.trim() || FALLBACK_NEGATIVE_PROMPTS[input.family],
      fellBack: true,
      warning,
      durationMs: Date.now() - started,
    };
  }

  private fallbackReply(reason: string, started: number): ChatDecision {
    const warning = `Chat model unavailable: ${reason}.`;
    this.logger.warn(warning);
    return {
      intent: "reply",
      reply: fillTemplate(FALLBACK_CHAT_REPLY, { reason }),
      fellBack: true,
      warning,
      durationMs: Date.now() - started,
    };
  }

  private describeFailure(err: unknown): string {
    return describeLlmFailure(err, this.llm);
  }
}
