// @ts-check
/**
 * Times a process's own HTTP exchanges with one server (Ollama), from the fetch() call to
 * the end of the response body (or its failure, or the caller's abort), by wrapping
 * globalThis.fetch. Plain JS: bench/lib/server-probe.mjs preloads it into a server started
 * with plain node, and bench/overhead.ts uses it in-process.
 */

/**
 * @param {string} urlPrefix only requests to URLs starting with this are timed
 * @param {() => number} now the clock the times are read on
 * @param {(start: number, end: number) => void} onExchange told once per exchange
 * @returns {() => void} puts the original fetch back
 */
export function timeFetches(urlPrefix, now, onExchange) {
  const original = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    if (!url.startsWith(urlPrefix)) return original(input, init);
    const start = now();
    let recorded = false;
    const record = () => {
      if (recorded) return;
      recorded = true;
      onExchange(start, now());
    };
    /** @type {Response} */
    let res;
    try {
      res = await original(input, init);
    } catch (err) {
      record();
      throw err;
    }
    if (!res.body) {
      record();
      return res;
    }
    // An abandoned stream ends the exchange as well.
    init?.signal?.addEventListener("abort", record, { once: true });
    const body = res.body.pipeThrough(new TransformStream({ flush: record }));
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  return () => {
    globalThis.fetch = original;
  };
}
