import type { ParamNames } from "../errors.js";
import type { ImageLinks } from "../image-links.js";
import {
  formatCompletedImage,
  formatImageProgress,
  formatPartialImage,
  formatStreamError,
  PartialImagePicker,
  type ImageEventPrefix,
  type ImageMeta,
} from "./openai-images.js";
import { base64Of, outcomeError, unixSeconds } from "./outcomes.js";
import { messageOf, type AnswerFormatter } from "./stream-formatter.js";

/**
 * The OpenAI image stream (`stream: true` on /v1/images/generations and /edits): progress
 * as `diffugen.progress`, up to `partial_images` real previews as partial images, then
 * one `<prefix>.completed` per image, or an `error` event the SDK throws on. Every message
 * carries the id of the job event it comes from.
 */

export interface OpenAIImageStreamOptions {
  prefix: ImageEventPrefix;
  /** `partial_images`: how many previews may go out. */
  partialImages: number;
  /** The size asked for, `WxH` or `auto`, until the run says which it draws. */
  size: string;
  quality: string;
  /** Where image links point (publicBaseUrl), signed when API_KEY is set. */
  links: ImageLinks;
  /** The route's names for request fields, for errors. */
  params: ParamNames;
  /** Epoch milliseconds (tests pin it). */
  clock?: () => number;
}

export function openaiImageStream(options: OpenAIImageStreamOptions): AnswerFormatter {
  const clock = options.clock ?? Date.now;
  const picker = new PartialImagePicker(options.partialImages);
  let meta: ImageMeta = { size: options.size, quality: options.quality, background: "opaque", outputFormat: "png" };
  return {
    ends: "at-answer",
    ids: true,
    needsImageData: true,
    progress(event, seq) {
      // The size the run draws, once it says (each completed image then says its own).
      if (event.kind === "params") meta = { ...meta, size: `${event.params.width}x${event.params.height}` };
      if (picker.take(event) && event.kind === "preview") {
        // A preview is smaller than the image (a `proj` preview is latent-sized, 1/8 of
        // it): its `size` is the size of the PNG it carries, not the size being drawn.
        const partial = formatPartialImage(options.prefix, event.pngBase64, picker.sent - 1, { ...meta, size: `${event.width}x${event.height}` }, unixSeconds(clock()));
        return [{ data: partial, event: partial.type, seq }];
      }
      const progress = formatImageProgress(event);
      return progress && [{ data: progress, event: progress.type, seq }];
    },
    outcome(outcome, seq, images) {
      if (outcome.kind !== "images") {
        const err = outcomeError(outcome, options.params);
        return [{ data: formatStreamError(err.message, err.details.code ?? null, err.details.type, err.details.param ?? null), event: "error", seq }];
      }
      return outcome.images.map((image, i) => {
        const completed = formatCompletedImage(options.prefix, base64Of(images, i), { ...meta, size: `${image.width}x${image.height}` }, unixSeconds(clock()), {
          revisedPrompt: outcome.prompt,
          url: options.links.image(image.path),
          seed: image.seed,
          index: image.index,
        });
        return { data: completed, event: completed.type, seq };
      });
    },
    failure(err) {
      return [{ data: formatStreamError(messageOf(err), "internal"), event: "error" }];
    },
  };
}
