/**
 * The parts of a user's prompt the LLM must not touch, and the checks run on its
 * answer: LoRA tags (`<lora:name:0.8>`), weighted phrases (`(word:1.2)`, `((word))`),
 * de-emphasis (`[word]`), and the subject itself. A small model drops or rewrites these
 * often enough that the answer is repaired rather than trusted.
 */

const LORA_TAG = /<lora:[^<>]+>/gi;
/** `( ... )` with at most one nested level, or `[ ... ]`. */
const WEIGHTED_SPAN = /\((?:[^()]|\([^()]*\))*\)|\[[^[\]]*\]/g;

export function findLoraTags(text: string): string[] {
  return text.match(LORA_TAG) ?? [];
}

/** `<lora:name:0.8>` → `name`; `<lora:name>` → `name`. */
export function loraName(tag: string): string {
  const body = tag.slice("<lora:".length, -1);
  const lastColon = body.lastIndexOf(":");
  const name = lastColon > 0 && /^\s*-?\d*\.?\d+\s*$/.test(body.slice(lastColon + 1)) ? body.slice(0, lastColon) : body;
  return name.trim().toLowerCase();
}

/** Weighted and de-emphasized spans, LoRA tags excluded. */
export function findWeightedSpans(text: string): string[] {
  return text.replace(LORA_TAG, " ").match(WEIGHTED_SPAN) ?? [];
}

/** The words inside a span: `((red hair:1.3))` → `red hair`. */
function spanText(span: string): string {
  return span
    .replace(/^[([]+|[)\]]+$/g, "")
    .replace(/:\s*-?\d*\.?\d+\s*$/, "")
    .trim();
}

export interface SyntaxRepair {
  text: string;
  /** What was put back or taken out, for the log. */
  changes: string[];
}

/**
 * Makes the LLM's prompt carry the user's special syntax exactly:
 * - every LoRA tag of `sources` is present with its original weight (re-appended if the
 *   model dropped it, restored if it changed the weight), and LoRA tags the user never
 *   wrote are removed (sd.cpp would try to load a file that does not exist);
 * - every weighted span of `emphasisSource` is present verbatim: put back in place of
 *   its plain words when the model stripped the syntax, else appended.
 */
export function restoreUserSyntax(refined: string, sources: { loraFrom: string[]; emphasisFrom: string }): SyntaxRepair {
  const changes: string[] = [];
  const userLoras = new Map<string, string>();
  for (const source of sources.loraFrom) {
    for (const tag of findLoraTags(source)) if (!userLoras.has(loraName(tag))) userLoras.set(loraName(tag), tag);
  }

  const present = new Set<string>();
  let text = refined.replace(LORA_TAG, (tag) => {
    const name = loraName(tag);
    const original = userLoras.get(name);
    if (original === undefined) {
      changes.push(`removed invented ${tag}`);
      return "";
    }
    if (present.has(name)) return "";
    present.add(name);
    if (tag !== original) changes.push(`restored ${original} (model wrote ${tag})`);
    return original;
  });

  const appended: string[] = [];
  for (const span of findWeightedSpans(sources.emphasisFrom)) {
    if (text.includes(span)) continue;
    const words = spanText(span);
    const at = words === "" ? -1 : indexOfWords(text, words);
    if (at >= 0) {
      text = text.slice(0, at) + span + text.slice(at + words.length);
      changes.push(`restored ${span}`);
    } else {
      appended.push(span);
      changes.push(`re-appended ${span}`);
    }
  }
  for (const [name, tag] of userLoras) {
    if (!present.has(name)) {
      appended.push(tag);
      changes.push(`re-appended ${tag}`);
    }
  }
  if (appended.length > 0) text = `${text.trim().replace(/[,\s]+$/, "")}, ${appended.join(", ")}`;
  return { text: tidyPrompt(text), changes };
}

/** Case-insensitive position of `words` in `text` at word boundaries, outside any span. */
function indexOfWords(text: string, words: string): number {
  const escaped = words.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const re = new RegExp(`(?<![\\p{L}\\p{N}(\\[])${escaped}(?![\\p{L}\\p{N}:)\\]])`, "iu");
  return text.search(re);
}

/** Collapses whitespace and stray commas, strips quotes and labels a model may add. */
export function tidyPrompt(text: string): string {
  let t = text.trim();
  t = t.replace(/^(?:positive\s+)?prompt\s*:\s*/i, "");
  if (/^["'`].*["'`]$/s.test(t)) t = t.slice(1, -1);
  return t
    .replace(/\s+/g, " ")
    .replace(/\s+,/g, ",")
    .replace(/,(\s*,)+/g, ",")
    .replace(/^[,\s]+|[,\s]+$/g, "")
    .trim();
}

const STOP_WORDS = new Set(
  (
    "a an the and or but of in on at to for with without from by as into onto over under near " +
    "is are be it its this that these those there here my your our their me you we they he she him her them " +
    "please can could would will should want like some any very really just also " +
    "draw paint sketch render generate create make show give picture image photo photograph drawing painting " +
    "illustration art artwork pic img of one"
  ).split(" "),
);

/** Words that carry the request's meaning: no syntax, no stop words, no drawing verbs. */
export function contentWords(text: string): string[] {
  const plain = text
    .replace(LORA_TAG, " ")
    .replace(/:\s*-?\d*\.?\d+/g, " ")
    .normalize("NFKD")
    .replace(/\p{M}/gu, "")
    .toLowerCase();
  return [...new Set(plain.split(/[^\p{L}\p{N}]+/u).filter((w) => w.length >= 3 && !STOP_WORDS.has(w)))];
}

/**
 * A cheap check that the LLM kept the subject: at least one meaningful word of the
 * request (or, for a follow-up, of the previous prompt) appears in the answer, compared
 * by stem (first 4 letters) so "darker" matches "dark". Requests without such words
 * (only verbs, or no Latin script) pass.
 */
export function keepsSubject(refined: string, request: string, previousPrompt?: string): boolean {
  const answerWords = contentWords(refined);
  const latin = (w: string) => /^[a-z]+$/.test(w);
  const wanted = contentWords(request).filter(latin);
  if (previousPrompt !== undefined) wanted.push(...contentWords(previousPrompt).filter(latin));
  if (wanted.length === 0) return true;
  return wanted.some((w) => answerWords.some((a) => sameStem(w, a)));
}

/** Same first letters (up to 4): "darker"~"dark", "cat"~"cats", "mountains"~"mountain". */
function sameStem(a: string, b: string): boolean {
  const k = Math.min(4, a.length, b.length);
  return a.slice(0, k) === b.slice(0, k);
}
