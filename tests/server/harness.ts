import OpenAI from "openai";
import { PNG } from "pngjs";
import { startServer, type RunningServer, type StartServerOptions } from "../../src/server/index.js";
import { startStack, type Stack } from "../graph/harness.js";
import type { FakeOllamaOptions } from "../fakes/ollama-server.js";

/**
 * The real server on port 0 in front of the graph harness's stack (fake Ollama, sd-cli
 * double, simulated GPU), with the official OpenAI SDK as a client.
 */
export interface ServerStack {
  stack: Stack;
  server: RunningServer;
  url: string;
  client: OpenAI;
  close(): Promise<void>;
}

export async function startServerStack(
  options: {
    ollama?: FakeOllamaOptions;
    env?: Record<string, string>;
    sdEnv?: Record<string, string>;
    server?: StartServerOptions;
  } = {},
): Promise<ServerStack> {
  const stack = await startStack({ ollama: options.ollama, env: options.env, sdEnv: options.sdEnv });
  let server: RunningServer;
  try {
    server = await startServer(stack.deps, {
      port: 0,
      host: "127.0.0.1",
      apiKey: undefined,
      log: () => undefined,
      shutdownGraceMs: 5_000,
      ...options.server,
    });
  } catch (err) {
    await stack.close();
    throw err;
  }
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: options.server?.apiKey ?? "not-needed", maxRetries: 0, timeout: 20_000 });
  return {
    stack,
    server,
    url: server.url,
    client,
    async close() {
      await server.close();
      await stack.close();
    },
  };
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
