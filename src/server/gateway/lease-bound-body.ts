import type { GpuLease } from "../../gpu/index.js";

/** How a lease-bound body ended: every byte read, the upstream stream failed, or the client went. */
export type BodyEnd = "completed" | "failed" | "client_gone";

/**
 * A response body that holds an LLM lease for as long as it flows: the lease goes back
 * when the last byte has been read, when the upstream stream fails, or when the client
 * goes away (the server cancels the body, or `clientGone` aborts first). Until then no
 * diffusion job can take the GPU, so the model answering this call stays in VRAM.
 * `onEnd` hears once how it ended, right after the lease went back (for logs and metrics).
 * `cut`, when given, ends it as the client going would (server shutdown after its grace).
 */
export function leaseBoundBody(
  body: ReadableStream<Uint8Array> | null,
  lease: GpuLease,
  clientGone: AbortSignal,
  onEnd?: (how: BodyEnd) => void,
  cut?: AbortSignal,
): ReadableStream<Uint8Array> | null {
  let ended = false;
  const end = (how: BodyEnd) => {
    if (ended) return;
    ended = true;
    clientGone.removeEventListener("abort", onGone);
    cut?.removeEventListener("abort", onGone);
    void lease.release();
    onEnd?.(how);
  };
  // The relayed stream is not ended here: a client that is really gone has its connection
  // closed by the server, and one still there (shutdown cut the call) must not take a
  // truncated answer for a whole one; shutdown closes its connection last.
  const onGone = () => {
    end("client_gone");
    void reader?.cancel(clientGone.reason ?? cut?.reason).catch(() => undefined);
  };
  if (body === null) {
    end("completed");
    return null;
  }
  if (clientGone.aborted || cut?.aborted) {
    end("client_gone");
    void body.cancel().catch(() => undefined);
    return body;
  }
  const reader: ReadableStreamDefaultReader<Uint8Array> | undefined = body.getReader();
  clientGone.addEventListener("abort", onGone, { once: true });
  cut?.addEventListener("abort", onGone, { once: true });
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const chunk = await reader.read();
        if (ended) return; // gone meanwhile: nothing more is relayed
        if (chunk.done) {
          end("completed");
          controller.close();
        } else {
          controller.enqueue(chunk.value);
        }
      } catch (err) {
        end(clientGone.aborted ? "client_gone" : "failed");
        controller.error(err);
      }
    },
    async cancel(reason) {
      end("client_gone");
      await reader.cancel(reason).catch(() => undefined);
    },
  });
}
