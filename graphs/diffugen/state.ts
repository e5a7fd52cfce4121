import { StateSchema } from "@langchain/langgraph";
import { z } from "zod";
import { generationRequestSchema, type GenerationParams } from "../../src/diffusion/index.js";

/**
 * What a run of the DiffuGen graph knows at each step: what was asked, what the LLM made
 * of it, what sd.cpp produced, how long each step took, and what went wrong. Everything
 * here is plain JSON so LangGraph Studio can show it and a checkpointer can store it.
 */

const conversationTurn = z.object({
  role: z.enum(["user", "assistant", "system"]),
  content: z.string(),
});

const refinedPrompt = z.object({
  prompt: z.string(),
  negativePrompt: z.string(),
  /** True when the user's own words were used because refinement failed or was off. */
  fellBack: z.boolean(),
  warning: z.string().optional(),
});

const generatedImage = z.object({
  path: z.string(),
  seed: z.number(),
  width: z.number(),
  height: z.number(),
  index: z.number(),
});

export const runErrorSchema = z.object({
  /** Stable, for API layers: invalid_request, model_not_found, out_of_memory, ... */
  code: z.string(),
  message: z.string(),
  /** The request field at fault, for validation errors. */
  param: z.string().optional(),
  /** The node where it happened. */
  node: z.string(),
});
export type RunError = z.infer<typeof runErrorSchema>;

export const DiffugenState = new StateSchema({
  /** Names the run in logs, events and the GPU queue. Generated when not given. */
  jobId: z.string().optional(),
  /** `image`: always draw. `chat`: the LLM decides between drawing and replying. */
  mode: z.enum(["image", "chat"]).default("image"),
  /** The generation request (for chat, `prompt` is the user's last message). */
  request: generationRequestSchema,
  /** Let the LLM rewrite the prompt (image mode; chat always consults the LLM). */
  refinePrompt: z.boolean().default(true),
  /** The conversation before the request, oldest first (chat mode). */
  messages: z.array(conversationTurn).default(() => []),
  /** The prompt of the previous picture in the conversation, for "make it darker". */
  previousPrompt: z.string().optional(),

  refined: refinedPrompt.optional(),
  /**
   * `draw`; `reply`: the user asked for no picture; `task`: the message is a client's
   * background task (OpenWebUI's title, tags...), answered as written, never drawn.
   */
  intent: z.enum(["draw", "reply", "task"]).optional(),
  /**
   * The answer in words: written by `reply` (streamed), or by `refine` when the LLM could
   * not be asked (the apology).
   */
  replyText: z.string().optional(),
  /** The registry name of the model that drew, and every parameter it used. */
  model: z.string().optional(),
  params: z.custom<GenerationParams>().optional(),
  images: z.array(generatedImage).default(() => []),
  /** Milliseconds spent in each node. */
  timings: z.record(z.string(), z.number()).default(() => ({})),
  warnings: z.array(z.string()).default(() => []),
  error: runErrorSchema.optional(),
});

export type DiffugenStateValue = typeof DiffugenState.State;

/** Whether a run with this intent answers in words (the `reply` node) instead of drawing. */
export function answersInWords(intent: DiffugenStateValue["intent"]): boolean {
  return intent === "reply" || intent === "task";
}
export type DiffugenStateUpdate = typeof DiffugenState.Update;
export type GeneratedImage = z.infer<typeof generatedImage>;
export type ConversationTurnValue = z.infer<typeof conversationTurn>;
