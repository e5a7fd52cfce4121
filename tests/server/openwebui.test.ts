import { afterEach, describe, expect, it } from "vitest";
import { readSpawns, readViolations } from "../fakes/fake-gpu.mjs";
import type { Responder } from "../fakes/ollama-server.js";
import { makePng, pngSize, startServerStack, type ServerStack } from "./harness.js";
import { taskAnswers, taskMessage, taskNames, taskOf, taskRequest } from "./openwebui-tasks.js";

/**
 * OpenWebUI's own requests, replayed byte for byte as far as it matters (REFERENCE.md §4,
 * backend/open_webui/routers/images.py and its chat proxy), with an API key set as a real
 * deployment would, and checked the way OpenWebUI reads the answers. Images are 64x64 with
 * a few steps (OpenWebUI's IMAGE_SIZE / custom parameters) to keep the doubles fast.
 */

const KEY = "owui-secret-key";

let s: ServerStack | undefined;
afterEach(async () => {
  await s?.close();
  s = undefined;
});

/** Python's json.dumps with its default separators, as aiohttp's `json=` sends a body. */
function pythonJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(", ")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.entries(value)
      .map(([k, v]) => `${JSON.stringify(k)}: ${pythonJson(v)}`)
      .join(", ")}}`;
  }
  // json.dumps escapes non-ASCII by default (ensure_ascii=True).
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** ENABLE_FORWARD_USER_INFO_HEADERS: OpenWebUI tells the backend who asked. */
const userInfoHeaders = {
  "X-OpenWebUI-User-Name": "Ada",
  "X-OpenWebUI-User-Id": "8c6f0c1e-user",
  "X-OpenWebUI-User-Email": "ada@example.com",
  "X-OpenWebUI-User-Role": "admin",
};

/** images.py get_image_data(): a data URL is split at the comma, anything else is raw base64 of a PNG. */
function openWebUiImageData(data: string): { bytes: Buffer; mime: string } {
  if (data.includes(",")) {
    const [header, encoded] = data.split(",", 2) as [string, string];
    return { bytes: Buffer.from(encoded, "base64"), mime: header.split(";")[0]!.replace(/^data:/, "") };
  }
  return { bytes: Buffer.from(data, "base64"), mime: "image/png" };
}

const isPng = (bytes: Buffer) => bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

/** What images.py does with the answer: every data[i] as image bytes (a `url` fetched with the same bearer). */
async function readImagesLikeOpenWebUI(res: Response, headers: Record<string, string>): Promise<{ bytes: Buffer; mime: string }[]> {
  expect(res.status).toBe(200); // r.raise_for_status()
  const body = JSON.parse(await res.text()) as { data: { b64_json?: string; url?: string }[] }; // r.json(content_type=None)
  const out: { bytes: Buffer; mime: string }[] = [];
  for (const image of body.data) {
    if (image.url) {
      const fetched = await fetch(image.url, { headers: Object.fromEntries(Object.entries(headers).filter(([k]) => k !== "Content-Type")) });
      expect(fetched.status).toBe(200);
      const contentType = fetched.headers.get("content-type") ?? "";
      expect(contentType.split("/")[0]).toBe("image");
      out.push({ bytes: Buffer.from(await fetched.arrayBuffer()), mime: contentType });
    } else {
      out.push(openWebUiImageData(image.b64_json!));
    }
  }
  return out;
}

describe("OpenWebUI's image engine (openai), replayed", () => {
  it("POST /images/generations with IMAGES_OPENAI_API_PARAMS merged in: data[0].b64_json is the PNG", async () => {
    s = await startServerStack({ server: { apiKey: KEY } });
    const headers = { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json", ...userInfoHeaders };
    const data = {
      model: "sd15",
      prompt: "A lighthouse at dusk, waves crashing — oil painting",
      n: 1,
      size: "64x64",
      response_format: "b64_json",
      // IMAGES_OPENAI_API_PARAMS = {"steps": 4, "cfg_scale": 6, "sampling_method": "euler"}
      ...{ steps: 4, cfg_scale: 6, sampling_method: "euler" },
    };
    const res = await fetch(`${s.url}/v1/images/generations`, { method: "POST", headers, body: pythonJson(data) });
    const images = await readImagesLikeOpenWebUI(res, headers);

    expect(images).toHaveLength(1);
    expect(images[0]!.mime).toBe("image/png");
    expect(isPng(images[0]!.bytes)).toBe(true);
    expect(pngSize(images[0]!.bytes)).toEqual({ width: 64, height: 64 });
    // The merged parameters reached sd-cli.
    const argv = readSpawns(s.stack.gpuDir)[0]!.argv.join(" ");
    expect(argv).toContain("--steps 4");
    expect(argv).toContain("--cfg-scale 6");
    expect(argv).toContain("--sampling-method euler");
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });

  it("with response_format overridden to url in the params, the URL is fetched with the same bearer", async () => {
    s = await startServerStack({ server: { apiKey: KEY } });
    const headers = { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" };
    // {**data, **IMAGES_OPENAI_API_PARAMS}: the params win.
    const params: Record<string, unknown> = { steps: 2, response_format: "url" };
    const data = { model: "sd15", prompt: "a red fox", n: 1, size: "64x64", response_format: "b64_json", ...params };
    const res = await fetch(`${s.url}/v1/images/generations`, { method: "POST", headers, body: pythonJson(data) });
    const [image] = await readImagesLikeOpenWebUI(res, headers);
    expect(image!.mime).toBe("image/png");
    expect(pngSize(image!.bytes)).toEqual({ width: 64, height: 64 });
  });

  it("POST /images/edits as multipart: image + prompt + model + n/size as strings + response_format=b64_json", async () => {
    s = await startServerStack({ server: { apiKey: KEY } });
    const headers = { Authorization: `Bearer ${KEY}`, ...userInfoHeaders };
    const form = new FormData();
    // aiohttp.FormData: the data fields first (str(value)), then the file.
    for (const [key, value] of Object.entries({ model: "sd15", prompt: "make it snowy", n: 1, size: "64x64", response_format: "b64_json" })) {
      form.append(key, String(value));
    }
    form.append("image", new Blob([makePng(64, 64)], { type: "image/png" }), "image.png");
    const res = await fetch(`${s.url}/v1/images/edits`, { method: "POST", headers, body: form });
    const [image] = await readImagesLikeOpenWebUI(res, headers);

    expect(pngSize(image!.bytes)).toEqual({ width: 64, height: 64 });
    const argv = readSpawns(s.stack.gpuDir)[0]!.argv;
    expect(argv).toContain("-i");
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });
});

describe("OpenWebUI's chat connection (OpenAI API), replayed", () => {
  it("GET /models, then a streaming POST /chat/completions: what OpenWebUI reads from the stream", async () => {
    s = await startServerStack({ server: { apiKey: KEY } });
    const headers = { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json", ...userInfoHeaders };

    const models = await fetch(`${s.url}/v1/models`, { headers });
    expect(models.status).toBe(200);
    const list = (await models.json()) as { data: { id: string; object: string }[] };
    expect(list.data.map((m) => m.id)).toContain("diffugen:sd15");

    // What OpenWebUI forwards: model, messages (its system prompt first), stream; the
    // model's custom parameters (here size and steps) merged into the body; no stream_options.
    const payload = {
      stream: true,
      model: "diffugen:sd15",
      messages: [
        { role: "system", content: "You are a helpful assistant." },
        { role: "user", content: "draw a red fox in the snow" },
      ],
      size: "64x64",
      steps: 4,
    };
    const res = await fetch(`${s.url}/v1/chat/completions`, { method: "POST", headers, body: pythonJson(payload) });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const text = await res.text();

    const lines = text.split(/\r?\n/).filter((line) => line !== "");
    for (const line of lines) expect(line).toMatch(/^(data:|:|event:)/);
    // "Chunk too big" in some versions: every line small, the picture alone in one line.
    const big = lines.filter((line) => line.length > 4096);
    expect(big).toHaveLength(1);
    expect(big[0]).toContain('"images"');
    for (const line of lines) expect(line.length).toBeLessThan(big[0] === line ? 4 * 1024 * 1024 : 64 * 1024);

    // OpenWebUI's parser: skip what is not `data:`, stop at [DONE], json.loads the rest.
    const data = lines.filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim());
    expect(data.at(-1)).toBe("[DONE]");
    expect(data.filter((d) => d === "[DONE]")).toHaveLength(1);
    type Chunk = {
      choices: { delta: { content?: string; reasoning_content?: string; images?: { type: string; image_url: { url: string } }[] }; finish_reason: string | null }[];
      event?: { type: string; data: { description: string; done: boolean } };
      usage?: unknown;
      error?: unknown;
    };
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d) as Chunk);
    expect(chunks.some((c) => c.error)).toBe(false);
    // No stream_options: no usage chunk.
    expect(chunks.some((c) => c.usage !== undefined)).toBe(false);

    const statuses = chunks.filter((c) => c.event?.type === "status").map((c) => c.event!.data);
    expect(statuses.length).toBeGreaterThan(2);
    expect(statuses.slice(0, -1).every((st) => st.done === false)).toBe(true);
    expect(statuses.at(-1)!.done).toBe(true);
    expect(statuses.some((st) => /^Sampling \d+\/4/.test(st.description))).toBe(true);

    const reasoning = chunks.map((c) => c.choices[0]?.delta.reasoning_content ?? "").join("");
    expect(reasoning).toContain("Prompt: draw a red fox in the snow, highly detailed");

    const withImages = chunks.filter((c) => c.choices[0]?.delta.images);
    expect(withImages).toHaveLength(1);
    const part = withImages[0]!.choices[0]!.delta.images![0]!;
    expect(part.type).toBe("image_url");
    expect(part.image_url.url).toMatch(/^data:image\/png;base64,[A-Za-z0-9+/]+=*$/);
    const { bytes, mime } = openWebUiImageData(part.image_url.url);
    expect(mime).toBe("image/png");
    expect(isPng(bytes)).toBe(true);
    expect(pngSize(bytes)).toEqual({ width: 64, height: 64 });

    // With the API key set, the content embeds the picture through a signed link, which the
    // user's browser loads with no header, and still carries the prompt for the next turn.
    const content = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    const markdown = /^!\[draw a red fox in the snow, highly detailed\]\((http:\/\/127\.0\.0\.1:\d+\/images\/[^)?]+\.png\?exp=\d+&sig=[\w-]+)\)/.exec(content);
    expect(markdown, content).not.toBeNull();
    const shown = await fetch(markdown![1]!);
    expect(shown.status).toBe(200);
    expect(shown.headers.get("content-type")).toBe("image/png");
    expect(chunks.filter((c) => c.choices[0]?.finish_reason === "stop")).toHaveLength(1);
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });

  it("with stream_options.include_usage: one usage chunk after the stop chunk, then [DONE]", async () => {
    s = await startServerStack({ server: { apiKey: KEY } });
    const payload = {
      stream: true,
      model: "diffugen",
      messages: [{ role: "user", content: "paint a cat" }],
      stream_options: { include_usage: true },
      size: "64x64",
      steps: 2,
    };
    const res = await fetch(`${s.url}/v1/chat/completions`, {
      method: "POST",
      headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
      body: pythonJson(payload),
    });
    const data = (await res.text())
      .split(/\r?\n/)
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).trim());
    expect(data.at(-1)).toBe("[DONE]");
    const last = JSON.parse(data.at(-2)!) as { choices: unknown[]; usage: { total_tokens: number } };
    expect(last.choices).toEqual([]);
    expect(last.usage.total_tokens).toBeGreaterThan(0);
  });
});

describe("OpenWebUI's background tasks sent to diffugen (its task model), replayed", () => {
  // Asked to decide, this LLM would draw: the history the tasks quote says "draw a red fox".
  const responder: Responder = (req) => {
    if (req.format) return JSON.stringify({ intent: "draw", prompt: "a red fox", negative_prompt: "" });
    const task = taskOf(req.lastUserMessage);
    return task ? taskAnswers[task] : `not a task: ${req.lastUserMessage.slice(0, 40)}`;
  };
  const headers = { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json", ...userInfoHeaders, "X-OpenWebUI-Chat-Id": "c0ffee-chat" };

  it("title, tags, follow-ups, queries, autocomplete, image prompt: each a text answer by the LLM, no sd-cli, nothing unloaded", async () => {
    s = await startServerStack({ server: { apiKey: KEY }, ollama: { responder } });
    const unloads = s.stack.ollama.stats.unload;
    for (const task of taskNames) {
      s.stack.ollama.requests.length = 0;
      const res = await fetch(`${s.url}/v1/chat/completions`, { method: "POST", headers, body: pythonJson(taskRequest(task)) });
      expect(res.status, task).toBe(200);
      const body = (await res.json()) as { object: string; choices: { message: { content: string; images?: unknown }; finish_reason: string }[] };
      expect(body.object).toBe("chat.completion");
      // What OpenWebUI then parses as JSON: the LLM's own words.
      expect(body.choices[0]!.message.content, task).toBe(taskAnswers[task]);
      expect(body.choices[0]!.message.images).toBeUndefined();
      // The template went to the LLM as written, in plain text: nobody asked it whether to draw.
      const chats = s.stack.ollama.requests.filter((r) => r.kind === "chat");
      expect(chats.map((r) => r.body?.format), task).toEqual([undefined]);
      expect(chats[0]!.body?.messages).toEqual([{ role: "user", content: taskMessage(task) }]);
    }
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);
    expect(s.stack.ollama.stats.unload).toBe(unloads);
    expect(s.stack.ollama.listed()).toContain("qwen2.5:3b");
    expect(readViolations(s.stack.gpuDir)).toEqual([]);
  });

  it("with stream: true, the answer streams in words, no picture, no sd-cli", async () => {
    s = await startServerStack({ server: { apiKey: KEY }, ollama: { responder } });
    const res = await fetch(`${s.url}/v1/chat/completions`, { method: "POST", headers, body: pythonJson(taskRequest("follow_ups", { stream: true })) });
    expect(res.status).toBe(200);
    const data = (await res.text())
      .split(/\r?\n/)
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).trim());
    expect(data.at(-1)).toBe("[DONE]");
    type Chunk = { choices: { delta: { content?: string; images?: unknown; reasoning_content?: string } }[]; error?: unknown };
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d) as Chunk);
    expect(chunks.some((c) => c.error)).toBe(false);
    const pieces = chunks.flatMap((c) => (c.choices[0]?.delta.content ? [c.choices[0].delta.content] : []));
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.join("")).toBe(taskAnswers.follow_ups);
    expect(chunks.some((c) => c.choices[0]?.delta.images || c.choices[0]?.delta.reasoning_content)).toBe(false);
    expect(readSpawns(s.stack.gpuDir)).toEqual([]);
    expect(s.stack.ollama.stats.unload).toBe(0);
  });
});
