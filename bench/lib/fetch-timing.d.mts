/** See fetch-timing.mjs. */
export function timeFetches(urlPrefix: string, now: () => number, onExchange: (start: number, end: number) => void): () => void;
