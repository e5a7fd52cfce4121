import type { z } from "zod";
import type { GenerationRequest } from "../../diffusion/index.js";
import type { ParamNames } from "../errors.js";

/**
 * A dialect's request fields, declared once in a table: each public field's schema (its
 * validation and messages), and the generation request fields it fills (camelCase, see
 * src/diffusion/generation-request.ts). The body's schema, the mapping onto the generation
 * request and the `param` an error names all come from that one table, so a field cannot
 * be accepted under one name and reported under another.
 */

/** A field of the core generation request. */
export type RequestKey = keyof GenerationRequest;

/** What a dialect's fields put into the generation request (checked on admission). */
export type RequestPart = Partial<Record<RequestKey, unknown>>;

export interface DialectField<S extends z.ZodType | undefined = z.ZodType | undefined> {
  /** How the body carries it; none for a file, which is read apart from the body. */
  readonly schema: S;
  /** The generation request fields it stands for: an error about one of them names this field. */
  readonly fills: readonly RequestKey[];
  /** Its value → its request fields. Absent: not part of the request, or the route fills them. */
  toRequest?(value: S extends z.ZodType ? z.output<S> : never): RequestPart;
}

export type FieldTable = Readonly<Record<string, DialectField>>;

/** One generation request field under the dialect's own name. */
export function field<S extends z.ZodType>(schema: S, into: RequestKey): DialectField<S>;
/** Request fields filled by the field's own rule (`size` → width and height). */
export function field<S extends z.ZodType>(
  schema: S,
  fills: readonly RequestKey[],
  toRequest: (value: z.output<S>) => RequestPart,
): DialectField<S>;
export function field<S extends z.ZodType>(
  schema: S,
  fills: RequestKey | readonly RequestKey[],
  toRequest?: (value: z.output<S>) => RequestPart,
): DialectField<S> {
  if (typeof fills === "string") return { schema, fills: [fills], toRequest: (value) => ({ [fills]: value }) };
  return { schema, fills, ...(toRequest ? { toRequest } : {}) };
}

/** A field of the dialect that is no part of the generation request (`stream`, `quality`...). */
export function option<S extends z.ZodType>(schema: S): DialectField<S> {
  return { schema, fills: [] };
}

/**
 * Request fields the route fills itself from this one (the chat's prompt comes from its
 * messages, an edit's init image from the upload): the table still names it in errors.
 */
export function filledByRoute<S extends z.ZodType | undefined>(schema: S, fills: readonly RequestKey[]): DialectField<S> {
  return { schema, fills };
}

/** The body's zod shape: the fields the body carries, in the table's order (the first bad one is reported). */
export type ShapeOf<T extends FieldTable> = {
  [K in keyof T as T[K]["schema"] extends z.ZodType ? K : never]: Exclude<T[K]["schema"], undefined>;
};

export function shapeOf<T extends FieldTable>(table: T): ShapeOf<T> {
  return Object.fromEntries(Object.entries(table).flatMap(([name, f]) => (f.schema ? [[name, f.schema]] : []))) as ShapeOf<T>;
}

/** The generation request fields a body (parsed with the table's shape) asks for. */
export function requestOf(table: FieldTable, body: object): RequestPart {
  const values = body as Readonly<Record<string, unknown>>;
  const request: RequestPart = {};
  for (const [name, f] of Object.entries(table)) {
    if (f.toRequest) Object.assign(request, f.toRequest(Object.hasOwn(values, name) ? values[name] : undefined));
  }
  return request;
}

/** Generation request field → the name the client wrote it under: the `param` of an error about it. */
export function paramNamesOf(table: FieldTable): ParamNames {
  const names: Record<string, string> = {};
  for (const [name, f] of Object.entries(table)) for (const key of f.fills) names[key] = name;
  return names;
}
