/**
 * Ctrl-C (or a TERM from a service manager) while a command works: abort its signal so
 * the work stops cleanly (sd-cli killed, the GPU given back, a download's .part kept)
 * instead of the process dying half-way. `dispose` removes the handlers again.
 */
export function interruptSignal(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onSignal = () => controller.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  return {
    signal: controller.signal,
    dispose() {
      process.removeListener("SIGINT", onSignal);
      process.removeListener("SIGTERM", onSignal);
    },
  };
}
