/**
 * What the fake Ollama "says" when a test sets no responder: something plausible and
 * derived from the last user message, and, when the request carries a JSON schema as
 * `format` (structured output), a JSON value valid against that schema.
 */

export interface ResponderRequest {
  endpoint: "chat" | "generate";
  model: string;
  /** The chat messages (for /api/generate: the system and prompt as messages). */
  messages: { role: string; content: string }[];
  /** The text of the last user message (the prompt for /api/generate). */
  lastUserMessage: string;
  /** `format` as sent: undefined, "json", or a JSON schema object. */
  format: unknown;
  options: Record<string, unknown> | undefined;
  think: unknown;
}

/** Returns the assistant's whole answer; the server streams it in chunks. */
export type Responder = (req: ResponderRequest) => string | Promise<string>;

const DRAW_WORDS = /\b(draw|paint|sketch|picture|image|photo|render|generate|illustrat\w*)\b/i;

export const defaultResponder: Responder = (req) => {
  const text = req.lastUserMessage.trim();
  if (req.format !== null && typeof req.format === "object") return JSON.stringify(valueForSchema(req.format, text));
  if (req.format === "json") return JSON.stringify({ response: `${text}, highly detailed` });
  return `You said: ${text}`;
};

type Schema = {
  type?: string | string[];
  properties?: Record<string, Schema>;
  items?: Schema;
  enum?: unknown[];
  const?: unknown;
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  minimum?: number;
  minItems?: number;
};

/** A value valid against `schema`, with strings derived from the user's text by field name. */
export function valueForSchema(schema: unknown, text: string, key?: string): unknown {
  const s = (schema ?? {}) as Schema;
  if (s.const !== undefined) return s.const;
  if (Array.isArray(s.enum) && s.enum.length > 0) {
    if (key === "intent" && s.enum.includes("draw") && s.enum.includes("reply")) return DRAW_WORDS.test(text) ? "draw" : "reply";
    return s.enum[0];
  }
  const alternatives = s.anyOf ?? s.oneOf ?? s.allOf;
  if (alternatives && alternatives.length > 0) {
    const nonNull = alternatives.find((a) => a.type !== "null") ?? alternatives[0];
    return valueForSchema(nonNull, text, key);
  }
  const type = Array.isArray(s.type) ? (s.type.find((t) => t !== "null") ?? s.type[0]) : s.type;
  switch (type ?? (s.properties ? "object" : "string")) {
    case "object": {
      const out: Record<string, unknown> = {};
      for (const [name, prop] of Object.entries(s.properties ?? {})) out[name] = valueForSchema(prop, text, name);
      return out;
    }
    case "array":
      return Array.from({ length: s.minItems ?? 0 }, () => valueForSchema(s.items, text));
    case "number":
    case "integer":
      return s.minimum ?? 0;
    case "boolean":
      return false;
    case "null":
      return null;
    default:
      return stringFor(key, text);
  }
}

function stringFor(key: string | undefined, text: string): string {
  switch (key) {
    case "prompt":
      return `${text}, highly detailed`;
    case "negative_prompt":
      return "blurry, lowres";
    case "reply":
      return `You said: ${text}`;
    default:
      return text;
  }
}
