import { isAlive, readSpawns, runningDiffusions } from "../fakes/fake-gpu.mjs";
import type { RecordedRequest } from "../fakes/ollama-server.js";
import type { Stack } from "../helpers/stack.js";
import { until } from "../helpers/until.js";

/** What an Ollama client sees of an NDJSON answer, with when each line arrived. */
export interface NdjsonRead {
  status: number;
  headers: Headers;
  lines: Record<string, unknown>[];
  /** Date.now() when the first body byte arrived. */
  firstByteAt: number;
  /** Date.now() when each line arrived. */
  lineAt: number[];
}

export async function readNdjson(response: Response): Promise<NdjsonRead> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const lines: Record<string, unknown>[] = [];
  const lineAt: number[] = [];
  let firstByteAt = 0;
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    firstByteAt ||= Date.now();
    buffered += decoder.decode(value, { stream: true });
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (line.trim() === "") continue;
      lines.push(JSON.parse(line) as Record<string, unknown>);
      lineAt.push(Date.now());
    }
  }
  if (buffered.trim() !== "") throw new Error(`stream ended mid-line: ${buffered}`);
  return { status: response.status, headers: response.headers, lines, firstByteAt, lineAt };
}

export function postJson(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), ...init });
}

/** An image job through the OpenAI API (no streaming); resolves with its HTTP status. */
export async function drawImage(url: string, steps = 3): Promise<number> {
  const res = await postJson(`${url}/v1/images/generations`, { prompt: "a red fox in the snow", size: "64x64", steps, response_format: "b64_json" });
  const body = (await res.json()) as { data?: { b64_json?: string }[] };
  if (res.status === 200 && !body.data?.[0]?.b64_json) throw new Error("an image answer without its image");
  return res.status;
}

/** Waits for an sd-cli double to hold the simulated GPU; its pid. */
export async function sdCliRunning(stack: Stack): Promise<number> {
  return until("sd-cli to hold the GPU", () => runningDiffusions(stack.gpuDir)[0]);
}

/** Every sd-cli double this stack started has exited. */
export function noSdCliAlive(stack: Stack): boolean {
  return readSpawns(stack.gpuDir).every((s) => !isAlive(s.pid));
}

/** The chat requests that reached the fake Ollama with this user text. */
export function chatsWith(stack: Stack, text: string): RecordedRequest[] {
  return stack.ollama.requests.filter((r) => {
    if (r.kind !== "chat") return false;
    const messages = r.body?.messages;
    return Array.isArray(messages) && messages.some((m) => (m as { content?: unknown }).content === text);
  });
}

/** The gateway's jobs waiting in the GPU scheduler's queue now. */
export function gatewayWaiters(stack: Stack): string[] {
  return stack.deps.scheduler
    .state()
    .queue.filter((q) => q.jobId.startsWith("ollama-"))
    .map((q) => q.jobId);
}
