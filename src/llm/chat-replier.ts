import type { ChatOllama } from "@langchain/ollama";
import { createChatOllama } from "./chat-model.js";
import { conversationMessages, type ConversationTurn } from "./conversation.js";
import { describeLlmFailure, RefineTimeoutError } from "./llm-failure.js";
import type { LlmLogger } from "./logger.js";
import type { LlmConfig } from "./ollama-client.js";
import { CHAT_REPLY_SYSTEM_PROMPT, FALLBACK_CHAT_REPLY, fillTemplate } from "./prompts.js";

/**
 * Writes a reply in words, streamed: each piece goes to `onText` as Ollama produces it (a
 * plain ChatOllama stream: think:false and the model options of every other call).
 *
 * Like refinement, it falls back rather than fails while nothing has been said: when Ollama
 * is down, lacks the model or stays silent, the reply is an apology that says why. Words
 * already sent cannot be taken back, so a failure after them is an error
 * (ReplyInterruptedError). The caller's own abort rejects with its reason.
 */

export interface ReplyInput {
  /** The message to answer. */
  request: string;
  /** The conversation before it, oldest first. */
  history?: ConversationTurn[] | undefined;
  /**
   * `chat` (default): DiffuGen answers, as itself. `as-written`: no system prompt of ours;
   * the message is the whole instruction (a client's background task, which says exactly
   * what it wants back).
   */
  voice?: "chat" | "as-written" | undefined;
}

export interface Reply {
  /** The whole reply: the pieces given to `onText`, joined (or the apology, when `fellBack`). */
  text: string;
  /** True when the LLM could not answer and `text` is the apology. */
  fellBack: boolean;
  warning?: string | undefined;
  durationMs: number;
}

export interface ChatReplierOptions {
  /** Where a fallback is told. */
  logger: LlmLogger;
  /** Builds the chat model for one call; the default is createChatOllama. */
  createChatModel?: (llm: LlmConfig, opts: { signal: AbortSignal }) => ChatOllama;
  /** How many earlier turns of the conversation the LLM sees. Default 12. */
  maxHistoryTurns?: number;
}

/** The LLM broke off a reply it had begun. */
export class ReplyInterruptedError extends Error {
  constructor(reason: string, options?: ErrorOptions) {
    super(`The LLM stopped in the middle of its reply: ${reason}`, options);
    this.name = "ReplyInterruptedError";
  }
}

export class ChatReplier {
  private readonly logger: LlmLogger;
  private readonly createChatModel: (llm: LlmConfig, opts: { signal: AbortSignal }) => ChatOllama;
  private readonly maxHistoryTurns: number;

  constructor(
    private readonly llm: LlmConfig,
    options: ChatReplierOptions,
  ) {
    this.logger = options.logger;
    this.createChatModel = options.createChatModel ?? createChatOllama;
    this.maxHistoryTurns = options.maxHistoryTurns ?? 12;
  }

  async reply(input: ReplyInput, opts: { signal?: AbortSignal | undefined; onText?: ((text: string) => void) | undefined } = {}): Promise<Reply> {
    const { signal } = opts;
    signal?.throwIfAborted();
    const started = Date.now();
    const system = input.voice === "as-written" ? undefined : CHAT_REPLY_SYSTEM_PROMPT;
    const messages = conversationMessages(system, input.history, input.request.trim(), this.maxHistoryTurns);
    // A reply may run long, but Ollama must keep talking: REFINE_TIMEOUT_S without a word
    // (before the first or between two) ends the call, which would otherwise hold the LLM
    // lease, and so the GPU, for ever.
    const silence = new SilenceTimer(this.llm.refineTimeoutMs);
    const callSignal = signal ? AbortSignal.any([signal, silence.signal]) : silence.signal;
    let text = "";
    try {
      const model = this.createChatModel(this.llm, { signal: callSignal });
      for await (const chunk of await model.stream(messages, { signal: callSignal })) {
        silence.restart();
        // Leading blank lines are dropped from the pieces and the whole alike, so the two agree.
        const piece = text === "" ? chunk.text.trimStart() : chunk.text;
        if (piece === "") continue;
        text += piece;
        opts.onText?.(piece);
      }
      // ChatOllama ends an aborted stream quietly: tell that apart from a finished reply.
      if (callSignal.aborted) throw callSignal.reason;
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const reason = describeLlmFailure(silence.fired ? new RefineTimeoutError(this.llm.refineTimeoutMs) : err, this.llm);
      if (text !== "") throw new ReplyInterruptedError(reason, { cause: err });
      return this.fallback(reason, started);
    } finally {
      silence.stop();
    }
    if (text === "") return this.fallback("the LLM gave an empty reply", started);
    return { text, fellBack: false, durationMs: Date.now() - started };
  }

  private fallback(reason: string, started: number): Reply {
    const warning = `Chat model unavailable: ${reason}.`;
    this.logger.warn(warning);
    return { text: fillTemplate(FALLBACK_CHAT_REPLY, { reason }), fellBack: true, warning, durationMs: Date.now() - started };
  }
}

/** Aborts its signal once `ms` pass without a restart(). */
class SilenceTimer {
  readonly #controller = new AbortController();
  #timer: NodeJS.Timeout | undefined;

  constructor(private readonly ms: number) {
    this.restart();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get fired(): boolean {
    return this.#controller.signal.aborted;
  }

  restart(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#controller.abort(new RefineTimeoutError(this.ms)), this.ms);
  }

  stop(): void {
    clearTimeout(this.#timer);
  }
}
