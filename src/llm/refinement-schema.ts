import { z } from "zod";

/**
 * What the LLM must answer, as zod schemas. ChatOllama.withStructuredOutput() sends
 * them to Ollama as JSON schema (`format`), and validates the answer against them.
 */

export const refinedPromptSchema = z.object({
  prompt: z.string().describe("The image prompt, written for the target image model."),
  negative_prompt: z.string().describe("What the image should avoid; an empty string when not used."),
});
export type RefinedPromptAnswer = z.infer<typeof refinedPromptSchema>;

/**
 * The chat's decision. A reply's words are not part of it: a structured answer arrives
 * whole, and the words must stream (they are asked for afterwards, in plain text).
 */
export const chatDecisionSchema = z.object({
  intent: z.enum(["draw", "reply"]).describe('"draw" when the user asks for a picture, else "reply".'),
  prompt: z.string().optional().describe('The image prompt, when intent is "draw".'),
  negative_prompt: z.string().optional().describe('What the image should avoid, when intent is "draw".'),
});
export type ChatDecisionAnswer = z.infer<typeof chatDecisionSchema>;
