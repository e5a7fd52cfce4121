import OpenAI from "openai";
import { PNG } from "pngjs";
import type { RunningServer, StartServerOptions } from "../../src/server/index.js";
import { startStack, type ServedStack, type StackOptions } from "../helpers/stack.js";

/**
 * The real server on port 0 in front of the stack bootstrap builds (tests/helpers/stack.ts:
 * fake Ollama, sd-cli double, simulated GPU), with the official OpenAI SDK as a client.
 */
export interface ServerStack {
  stack: ServedStack;
  server: RunningServer;
  url: string;
  client: OpenAI;
  close(): Promise<void>;
}

export async function startServerStack(options: StackOptions & { server?: StartServerOptions } = {}): Promise<ServerStack> {
  const stack = await startStack({ ...options, server: { apiKey: undefined, ...options.server } });
  const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: options.server?.apiKey ?? "not-needed", maxRetries: 0, timeout: 20_000 });
  return { stack, server: stack.server, url: stack.url, client, close: () => stack.close() };
}

export interface SseMessage {
  event: string | undefined;
  data: string;
  id: string | undefined;
}

/** Parses a whole event stream (what a client sees), counting comment lines too. */
export function parseSse(text: string): { messages: SseMessage[]; comments: string[] } {
  const messages: SseMessage[] = [];
  const comments: string[] = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    if (block.trim() === "") continue;
    let event: string | undefined;
    let id: string | undefined;
    const data: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(":")) comments.push(line);
      else if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("id:")) id = line.slice(3).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (data.length > 0) messages.push({ event, data: data.join("\n"), id });
  }
  return { messages, comments };
}

export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: "POST", headers: { "Content-Type": "application/json", ...headers }, body: JSON.stringify(body) });
}

/** A real PNG of the given size (a gradient, so it is not all one colour). */
export function makePng(width: number, height: number): Buffer {
  const png = new PNG({ width, height });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      png.data[i] = (x * 255) / width;
      png.data[i + 1] = (y * 255) / height;
      png.data[i + 2] = 128;
      png.data[i + 3] = 255;
    }
  }
  return PNG.sync.write(png);
}

export function pngSize(buf: Buffer): { width: number; height: number } {
  const png = PNG.sync.read(buf);
  return { width: png.width, height: png.height };
}

/** Tiny and fast: every test image is 64x64 with a few steps. */
export const tiny = { size: "64x64" as const, steps: 3 };
