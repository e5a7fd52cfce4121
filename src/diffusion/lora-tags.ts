/**
 * LoRAs are requested inside the prompt as `<lora:name:weight>` (sd.cpp's syntax, the
 * same as A1111's); sd-cli then loads `name.safetensors` (or .ckpt/.gguf) from
 * `--lora-model-dir`. The name is joined to that directory by sd-cli, so a name with a
 * path separator or `..` would read any file on the box: we refuse those.
 */

export interface LoraTag {
  name: string;
  weight: number;
  /** The tag as written in the prompt. */
  tag: string;
}

/** sd.cpp's own pattern: name up to the first ':', weight up to '>'. */
const loraTagPattern = /<lora:([^:>]*):([^>]*)>/g;

/** File extensions sd.cpp tries for a LoRA name, in its order. */
export const loraFileExtensions = [".safetensors", ".ckpt", ".pt", ".gguf"] as const;

export function hasLoraTags(prompt: string): boolean {
  return /<lora:/.test(prompt);
}

/**
 * Every LoRA tag in the prompt; throws a plain Error naming the bad tag when a name or
 * weight is unusable (the caller turns it into a request error for its field).
 */
export function parseLoraTags(prompt: string): LoraTag[] {
  const tags: LoraTag[] = [];
  for (const match of prompt.matchAll(loraTagPattern)) {
    const [tag, rawName = "", rawWeight = ""] = match;
    const name = rawName.trim();
    const problem = loraNameProblem(name);
    if (problem) throw new Error(`LoRA tag ${tag}: ${problem}`);
    const weight = Number(rawWeight.trim());
    if (rawWeight.trim() === "" || !Number.isFinite(weight)) {
      throw new Error(`LoRA tag ${tag}: the weight must be a number`);
    }
    tags.push({ name, weight, tag });
  }
  return tags;
}

/** Why a LoRA name cannot be used, or undefined when it is a plain file name. */
export function loraNameProblem(name: string): string | undefined {
  if (name === "") return "the name is empty";
  if (/[/\\]/.test(name)) return "the name must not contain a path separator";
  if (name.includes("..")) return "the name must not contain '..'";
  if (name.includes("\0")) return "the name must not contain NUL";
  return undefined;
}

/**
 * The prompt without its LoRA tags, as sd-cli hands it to the text encoder. sd-server
 * takes LoRAs as a list and reads no tag, so it is sent this text and the list.
 */
export function withoutLoraTags(prompt: string): string {
  return prompt.replace(loraTagPattern, "");
}
