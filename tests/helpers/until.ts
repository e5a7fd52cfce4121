/**
 * Polls `probe` every 10 ms until it answers something other than `undefined` or `false`,
 * and returns that; rejects naming `what` after `timeoutMs`. For states a test cannot be
 * told of (a file appearing, a job reaching the GPU), never for timing the product.
 */
export async function until<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
