import type { ProgressEvent } from "../../events/progress-event.js";

/**
 * A ProgressEvent as the debugging stream sends it: as is, except a preview's PNG, which
 * is replaced by its size unless the client asked for previews.
 */
export function formatRawEvent(event: ProgressEvent, includePreviews: boolean): Record<string, unknown> {
  if (event.kind !== "preview" || includePreviews) return { ...event };
  const { pngBase64, ...rest } = event;
  return { ...rest, pngBytes: Math.floor((pngBase64.length * 3) / 4) };
}
