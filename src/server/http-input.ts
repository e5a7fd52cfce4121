import type { Context } from "hono";
import { z } from "zod";
import { ApiError, invalidRequest, renamedParam } from "./errors.js";

/**
 * Request bodies → typed values, or a 400 naming the field. Form posts (image edits) and
 * OpenWebUI's merged parameters can deliver numbers and booleans as strings, so the
 * schemas accept "20" and "true" where a number or flag is expected.
 */

/** A number, or a string that is exactly a decimal number ("" and "abc" stay invalid). */
export function numeric<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (typeof v === "string" && /^\s*[-+]?(\d+(\.\d*)?|\.\d+)\s*$/.test(v) ? Number(v) : v), schema);
}

export function flag() {
  return z.preprocess((v) => (v === "true" || v === "1" ? true : v === "false" || v === "0" ? false : v), z.boolean());
}

/** A number or numeric string, checked later (with the model's limits) by the generation schema. */
export const looseNumber = z.union([z.number(), z.string()]);

/** `WxH` → sides; `auto` (or nothing) → the model's default size. */
export const sizeSchema = z
  .string()
  .trim()
  .regex(/^(auto|\d{1,5}x\d{1,5})$/i, { error: "size must be 'WIDTHxHEIGHT' (e.g. '512x512') or 'auto'" });

export function parseSize(size: string | undefined): { width?: number; height?: number } {
  const match = size?.trim().match(/^(\d+)x(\d+)$/i);
  return match ? { width: Number(match[1]), height: Number(match[2]) } : {};
}

/** validationError without the request: it cannot tell a missing field from a wrong one. */
const noInput = Symbol("no input");

/** The zod issue a client can act on, as a 400 with OpenAI's `param` (`messages[1].content`). */
export function validationError(
  error: z.ZodError,
  params: Readonly<Record<string, string>> = {},
  input: unknown = noInput,
): ApiError {
  const issue = error.issues[0];
  if (!issue) return invalidRequest("Invalid request body");
  let path = issue.path;
  let detail = issue.message;
  if (issue.code === "unrecognized_keys" && issue.keys[0]) {
    path = [...path, issue.keys[0]];
    detail = `unknown parameter '${issue.keys[0]}'`;
  }
  // zod 4 leaves `input` out of its issues: look the value up, or a prompt sent as a number
  // would be reported as missing.
  if (issue.code === "invalid_type" && path.length > 0 && input !== noInput && valueAt(input, path) === undefined) detail = "is required";
  const param = formatPath(path);
  if (path.length === 0) return invalidRequest(`Invalid request body: ${detail}`, null);
  const shown = renamedParam(params, param);
  return invalidRequest(`Invalid '${shown}': ${detail}`, shown);
}

/** The value at a zod issue's path, through own properties only (never Object.prototype's). */
function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== "object" || typeof key === "symbol" || !Object.hasOwn(current, key)) return undefined;
    current = (current as Record<string | number, unknown>)[key];
  }
  return current;
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, key) => (typeof key === "number" ? `${out}[${key}]` : out === "" ? String(key) : `${out}.${String(key)}`), "");
}

/** Parses a JSON body against a schema, or throws the 400 for it. */
export async function readJson<T extends z.ZodType>(c: Context, schema: T): Promise<z.output<T>> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch (err) {
    // A body that never arrived whole (BODY_TIMEOUT_S, MAX_BODY_MB) says so, not "invalid JSON".
    if (err instanceof ApiError) throw err;
    throw invalidRequest(
      "We could not parse the JSON body of your request. Send valid JSON with 'Content-Type: application/json'.",
      null,
      "invalid_json",
    );
  }
  return parseWith(schema, body);
}

export function parseWith<T extends z.ZodType>(schema: T, value: unknown): z.output<T> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw validationError(parsed.error, {}, value);
  return parsed.data;
}
