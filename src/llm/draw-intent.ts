/**
 * Whether a chat message asks for a picture, without an LLM: the fallback when Ollama
 * cannot decide (down, timed out, nonsense answer). It errs towards drawing only when
 * the wording is explicit, since a wrong "draw" costs a minute of GPU time.
 */

const DRAW_VERB = String.raw`(?:draw|paint|sketch|illustrate|render|generate|create|make|design|imagine|produce|show)`;
const IMAGE_NOUN = String.raw`(?:image|picture|pic|photo|photograph|drawing|painting|illustration|portrait|artwork|art|wallpaper|logo|icon|sketch|render|poster|scene)s?`;

const DRAW_PATTERNS: RegExp[] = [
  // "draw a cat", "please paint me a sunset", "can you sketch ..."
  new RegExp(String.raw`^(?:(?:please|pls|can you|could you|would you|will you|now|ok|okay|and)\s+)*(?:draw|paint|sketch|illustrate|render)\b`, "i"),
  // "generate an image of ...", "make me a picture with ..."
  new RegExp(String.raw`\b${DRAW_VERB}\b(?:\s+\w+){0,4}?\s+${IMAGE_NOUN}\b`, "i"),
  // "a picture of a cat", "photo of ...", "an image showing ..."
  new RegExp(String.raw`\b${IMAGE_NOUN}\s+(?:of|showing|with|depicting)\b`, "i"),
  // "/imagine a castle", "imagine: ..."
  /^\/?(?:imagine|draw|image|img)\b[:\s]/i,
];

/** Changes to the previous picture; only a draw request when there is one. */
const FOLLOW_UP_PATTERN =
  /^(?:(?:please|ok|okay|now|and|but|then)[\s,]+)*(?:make (?:it|them|him|her|the \w+)|more|less|add|remove|without|change|same(?: thing| one)?(?: but)?|again|another|try again|redo|regenerate|in (?:the )?(?:style|winter|summer|autumn|spring|night|daylight)|at (?:night|dawn|dusk|sunset|sunrise)|but)\b/i;

export function looksLikeDrawRequest(message: string, opts: { hasPreviousPicture?: boolean } = {}): boolean {
  const text = message.trim();
  if (text === "") return false;
  // Questions about pictures ("what is a picture of ...?") are not requests.
  if (/^(?:what|why|how|who|when|where|which|is|are|does|do|did)\b.*\?$/i.test(text) && !/\b(?:can|could|would) you\b/i.test(text)) {
    return false;
  }
  if (DRAW_PATTERNS.some((re) => re.test(text))) return true;
  return opts.hasPreviousPicture === true && FOLLOW_UP_PATTERN.test(text);
}
