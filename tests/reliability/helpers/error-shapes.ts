/**
 * What each dialect's clients parse when something goes wrong (REFERENCE.md §3, §5), written
 * down here independently of src/server/errors.ts so the suite checks the server against
 * the contract rather than against itself:
 *
 * - OpenAI routes: `{"error": {"message", "type", "param", "code"}}`, nothing else at the
 *   top, message a non-empty string, type a string, param and code a string or null;
 * - the original DiffuGen API (`/generate...`): `{"success": false, "error": "<message>"}`.
 *   `/v1/images/generations/stream` (its events for an OpenAI body) is under /v1 and
 *   OpenAI-compatible: OpenAI's shape (issue 13 #15).
 */

export type Dialect = "openai" | "diffugen";

export function dialectFor(path: string): Dialect {
  const pathname = path.split("?")[0] ?? path;
  return /^\/generate(\/|$)/.test(pathname) ? "diffugen" : "openai";
}

/** Why `body` is not an error in `dialect`'s shape, or undefined when it is. */
export function errorShapeProblem(body: unknown, dialect: Dialect): string | undefined {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return `not a JSON object: ${JSON.stringify(body)}`;
  const record = body as Record<string, unknown>;
  if (dialect === "diffugen") {
    if (record.success !== false) return `success is ${JSON.stringify(record.success)}, not false`;
    if (typeof record.error !== "string" || record.error.trim() === "") return `error is ${JSON.stringify(record.error)}, not a message`;
    return undefined;
  }
  const keys = Object.keys(record);
  if (keys.length !== 1 || keys[0] !== "error") return `top-level keys ${JSON.stringify(keys)}, not ["error"]`;
  const error = record.error;
  if (error === null || typeof error !== "object" || Array.isArray(error)) return `error is ${JSON.stringify(error)}`;
  const e = error as Record<string, unknown>;
  const missing = ["message", "type", "param", "code"].filter((k) => !(k in e));
  if (missing.length > 0) return `error lacks ${missing.join(", ")}`;
  if (typeof e.message !== "string" || e.message.trim() === "") return `error.message is ${JSON.stringify(e.message)}`;
  if (typeof e.type !== "string" || e.type === "") return `error.type is ${JSON.stringify(e.type)}`;
  if (e.param !== null && typeof e.param !== "string") return `error.param is ${JSON.stringify(e.param)}`;
  if (e.code !== null && typeof e.code !== "string") return `error.code is ${JSON.stringify(e.code)}`;
  return undefined;
}
