// @ts-check
/**
 * JSON as sd-server sees it: nlohmann::json 3.11.2 (the copy vendored in stable-diffusion.cpp's
 * thirdparty/json.hpp), ported where the bytes a client receives depend on it.
 *
 *  - `parseJson` is nlohmann's lexer + parser: the same accepted inputs (a NUL byte ends the
 *    input, a UTF-8 BOM is skipped, no comments) and the same `parse_error.101` texts, with
 *    line/column and the "last read" token string as nlohmann counts them.
 *  - Values keep nlohmann's number kinds: integers are `bigint`, floating-point numbers are
 *    `JFloat`. Objects are `Map`s (last duplicate key wins).
 *  - `dumpJson` is `json::dump()`: keys sorted by their UTF-8 bytes (std::map), floats printed
 *    the way nlohmann does (`7.0`, `0.8999999761581421`, `1e+20`, non-finite → `null`),
 *    strings escaped as nlohmann escapes them.
 *  - `getInt`/`getFloat`/`getString`/... are `j.value(key, default)` with `get<T>()`'s
 *    conversions and `type_error.302`/`306` texts ("type must be number, but is string").
 */

/** A floating-point JSON number (nlohmann number_float). */
export class JFloat {
  /** @param {number} value */
  constructor(value) {
    this.value = value;
  }
}

/** A C++ `float` stored into a json: the double that float converts to. @param {number} x */
export const jfloat32 = (x) => new JFloat(Math.fround(x));
/** A C++ `double` stored into a json. @param {number} x */
export const jdouble = (x) => new JFloat(x);

/**
 * A JSON value: null, boolean, string, bigint (integer), JFloat, an array, or an object (a Map
 * when parsed; plain objects are dumped like Maps). Plain JS numbers are dumped as integers
 * when Number.isInteger, else as floats. (Typed loosely: JSDoc cannot name the recursion.)
 * @typedef {null | boolean | string | bigint | number | JFloat | any[] | Map<string, any> | { [key: string]: any }} JsonValue
 */

/** nlohmann's json::exception family: `what()` is the full "[json.exception.<kind>.<id>] ..." text. */
export class JsonError extends Error {
  /** @param {"parse_error" | "type_error" | "out_of_range"} kind @param {number} id @param {string} message */
  constructor(kind, id, message) {
    super(`[json.exception.${kind}.${id}] ${message}`);
    this.kind = kind;
    this.id = id;
    /** @type {Buffer | undefined} what() as raw bytes, when it may hold bytes that are not UTF-8 */
    this.bytes = undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// lexer
// ---------------------------------------------------------------------------------------------

const EOF = -1;
const T = /** @type {const} */ ({
  uninitialized: "<uninitialized>",
  literal_true: "true literal",
  literal_false: "false literal",
  literal_null: "null literal",
  value_string: "string literal",
  value_unsigned: "number literal",
  value_integer: "number literal",
  value_float: "number literal",
  begin_array: "'['",
  begin_object: "'{'",
  end_array: "']'",
  end_object: "'}'",
  name_separator: "':'",
  value_separator: "','",
  parse_error: "<parse error>",
  end_of_input: "end of input",
  literal_or_value: "'[', '{', or a literal",
});
/** @typedef {keyof typeof T} Token */

const CONTROL_NAMES = [
  "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "HT", "LF", "VT", "FF", "CR", "SO", "SI",
  "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM", "SUB", "ESC", "FS", "GS", "RS", "US",
];

/** `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`: the escape's letter → the byte it stands for. */
const SIMPLE_ESCAPES = new Map([
  [0x22, 0x22],
  [0x5c, 0x5c],
  [0x2f, 0x2f],
  [0x62, 0x08],
  [0x66, 0x0c],
  [0x6e, 0x0a],
  [0x72, 0x0d],
  [0x74, 0x09],
]);

const CONTROL_SHORT = /** @type {Record<number, string>} */ ({ 8: "b", 9: "t", 10: "n", 12: "f", 13: "r" });

class Lexer {
  /** @param {Uint8Array} input */
  constructor(input) {
    this.input = input;
    this.pos = 0;
    this.current = EOF;
    this.nextUnget = false;
    this.charsReadTotal = 0;
    this.charsReadCurrentLine = 0;
    this.linesRead = 0;
    /** @type {number[]} bytes of the token being read, for error messages */
    this.tokenString = [];
    /** @type {number[]} the decoded string / number text */
    this.tokenBuffer = [];
    this.errorMessage = "";
    /** @type {bigint} */
    this.valueInt = 0n;
    this.valueFloat = 0;
  }

  get() {
    ++this.charsReadTotal;
    ++this.charsReadCurrentLine;
    if (this.nextUnget) this.nextUnget = false;
    else this.current = this.pos < this.input.length ? /** @type {number} */ (this.input[this.pos++]) : EOF;
    if (this.current !== EOF) this.tokenString.push(this.current);
    if (this.current === 0x0a) {
      ++this.linesRead;
      this.charsReadCurrentLine = 0;
    }
    return this.current;
  }

  unget() {
    this.nextUnget = true;
    --this.charsReadTotal;
    if (this.charsReadCurrentLine === 0) {
      if (this.linesRead > 0) --this.linesRead;
    } else {
      --this.charsReadCurrentLine;
    }
    if (this.current !== EOF) this.tokenString.pop();
  }

  reset() {
    this.tokenBuffer = [];
    this.tokenString = [this.current & 0xff];
  }

  /** @param {number} c */
  add(c) {
    this.tokenBuffer.push(c);
  }

  /** The last read token as nlohmann prints it: control bytes as <U+XXXX>. @returns {Buffer} */
  tokenStringBytes() {
    /** @type {number[]} */
    const out = [];
    for (const c of this.tokenString) {
      if (c <= 0x1f) for (const ch of `<U+${c.toString(16).toUpperCase().padStart(4, "0")}>`) out.push(ch.charCodeAt(0));
      else out.push(c);
    }
    return Buffer.from(out);
  }

  position() {
    return ` at line ${this.linesRead + 1}, column ${this.charsReadCurrentLine}`;
  }

  skipBom() {
    if (this.get() === 0xef) return this.get() === 0xbb && this.get() === 0xbf;
    this.unget();
    return true;
  }

  skipWhitespace() {
    do this.get();
    while (this.current === 0x20 || this.current === 0x09 || this.current === 0x0a || this.current === 0x0d);
  }

  /** @returns {Token} */
  scan() {
    if (this.charsReadTotal === 0 && !this.skipBom()) {
      this.errorMessage = "invalid BOM; must be 0xEF 0xBB 0xBF if given";
      return "parse_error";
    }
    this.skipWhitespace();
    switch (this.current) {
      case 0x5b:
        return "begin_array";
      case 0x5d:
        return "end_array";
      case 0x7b:
        return "begin_object";
      case 0x7d:
        return "end_object";
      case 0x3a:
        return "name_separator";
      case 0x2c:
        return "value_separator";
      case 0x74:
        return this.scanLiteral("true", "literal_true");
      case 0x66:
        return this.scanLiteral("false", "literal_false");
      case 0x6e:
        return this.scanLiteral("null", "literal_null");
      case 0x22:
        return this.scanString();
      case 0x00:
      case EOF:
        return "end_of_input";
      default:
        if (this.current === 0x2d || (this.current >= 0x30 && this.current <= 0x39)) return this.scanNumber();
        this.errorMessage = "invalid literal";
        return "parse_error";
    }
  }

  /** @param {string} text @param {Token} type @returns {Token} */
  scanLiteral(text, type) {
    for (let i = 1; i < text.length; i++) {
      if (this.get() !== text.charCodeAt(i)) {
        this.errorMessage = "invalid literal";
        return "parse_error";
      }
    }
    return type;
  }

  getCodepoint() {
    let codepoint = 0;
    for (const factor of [12, 8, 4, 0]) {
      const c = this.get();
      if (c >= 0x30 && c <= 0x39) codepoint += (c - 0x30) << factor;
      else if (c >= 0x41 && c <= 0x46) codepoint += (c - 0x37) << factor;
      else if (c >= 0x61 && c <= 0x66) codepoint += (c - 0x57) << factor;
      else return -1;
    }
    return codepoint;
  }

  /** @param {number[]} ranges pairs of inclusive bounds */
  nextByteInRange(ranges) {
    this.add(this.current);
    for (let i = 0; i < ranges.length; i += 2) {
      const c = this.get();
      if (/** @type {number} */ (ranges[i]) <= c && c <= /** @type {number} */ (ranges[i + 1])) this.add(c);
      else {
        this.errorMessage = "invalid string: ill-formed UTF-8 byte";
        return false;
      }
    }
    return true;
  }

  /** @returns {Token} */
  scanString() {
    this.reset();
    for (;;) {
      const c = this.get();
      if (c === EOF) {
        this.errorMessage = "invalid string: missing closing quote";
        return "parse_error";
      }
      if (c === 0x22) return "value_string";
      if (c === 0x5c) {
        const e = this.get();
        const simple = SIMPLE_ESCAPES.get(e);
        if (simple !== undefined) {
          this.add(simple);
          continue;
        }
        if (e !== 0x75) {
          this.errorMessage = "invalid string: forbidden character after backslash";
          return "parse_error";
        }
        const cp1 = this.getCodepoint();
        let codepoint = cp1;
        if (cp1 === -1) {
          this.errorMessage = "invalid string: '\\u' must be followed by 4 hex digits";
          return "parse_error";
        }
        if (cp1 >= 0xd800 && cp1 <= 0xdbff) {
          if (this.get() === 0x5c && this.get() === 0x75) {
            const cp2 = this.getCodepoint();
            if (cp2 === -1) {
              this.errorMessage = "invalid string: '\\u' must be followed by 4 hex digits";
              return "parse_error";
            }
            if (cp2 >= 0xdc00 && cp2 <= 0xdfff) codepoint = (cp1 << 10) + cp2 - 0x35fdc00;
            else {
              this.errorMessage = "invalid string: surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF";
              return "parse_error";
            }
          } else {
            this.errorMessage = "invalid string: surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF";
            return "parse_error";
          }
        } else if (cp1 >= 0xdc00 && cp1 <= 0xdfff) {
          this.errorMessage = "invalid string: surrogate U+DC00..U+DFFF must follow U+D800..U+DBFF";
          return "parse_error";
        }
        for (const b of Buffer.from(String.fromCodePoint(codepoint), "utf8")) this.add(b);
        continue;
      }
      if (c <= 0x1f) {
        const hex = c.toString(16).toUpperCase().padStart(4, "0");
        const short = CONTROL_SHORT[c];
        this.errorMessage = `invalid string: control character U+${hex} (${CONTROL_NAMES[c]}) must be escaped to \\u${hex}${short ? ` or \\${short}` : ""}`;
        return "parse_error";
      }
      if (c <= 0x7f) {
        this.add(c);
        continue;
      }
      /** @type {number[] | null} */
      let ranges = null;
      if (c >= 0xc2 && c <= 0xdf) ranges = [0x80, 0xbf];
      else if (c === 0xe0) ranges = [0xa0, 0xbf, 0x80, 0xbf];
      else if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) ranges = [0x80, 0xbf, 0x80, 0xbf];
      else if (c === 0xed) ranges = [0x80, 0x9f, 0x80, 0xbf];
      else if (c === 0xf0) ranges = [0x90, 0xbf, 0x80, 0xbf, 0x80, 0xbf];
      else if (c >= 0xf1 && c <= 0xf3) ranges = [0x80, 0xbf, 0x80, 0xbf, 0x80, 0xbf];
      else if (c === 0xf4) ranges = [0x80, 0x8f, 0x80, 0xbf, 0x80, 0xbf];
      if (ranges === null) {
        this.errorMessage = "invalid string: ill-formed UTF-8 byte";
        return "parse_error";
      }
      if (!this.nextByteInRange(ranges)) return "parse_error";
    }
  }

  /** @returns {Token} */
  scanNumber() {
    this.reset();
    /** @type {Token} */
    let type = "value_unsigned";
    const isDigit = (/** @type {number} */ c) => c >= 0x30 && c <= 0x39;
    let c = this.current;
    let state = "";
    if (c === 0x2d) {
      this.add(c);
      type = "value_integer";
      c = this.get();
      if (c === 0x30) {
        this.add(c);
        state = "zero";
      } else if (isDigit(c)) {
        this.add(c);
        state = "any1";
      } else {
        this.errorMessage = "invalid number; expected digit after '-'";
        return "parse_error";
      }
    } else {
      this.add(c);
      state = c === 0x30 ? "zero" : "any1";
    }
    for (;;) {
      c = this.get();
      if (state === "zero" || state === "any1") {
        if (state === "any1" && isDigit(c)) {
          this.add(c);
          continue;
        }
        if (c === 0x2e) {
          this.add(c);
          type = "value_float";
          c = this.get();
          if (!isDigit(c)) {
            this.errorMessage = "invalid number; expected digit after '.'";
            return "parse_error";
          }
          this.add(c);
          state = "decimal2";
          continue;
        }
        if (c === 0x65 || c === 0x45) {
          this.add(c);
          state = "exponent";
        } else break;
      } else if (state === "decimal2") {
        if (isDigit(c)) {
          this.add(c);
          continue;
        }
        if (c === 0x65 || c === 0x45) {
          this.add(c);
          state = "exponent";
        } else break;
      } else if (state === "any2") {
        if (isDigit(c)) {
          this.add(c);
          continue;
        }
        break;
      }
      if (state === "exponent") {
        type = "value_float";
        c = this.get();
        if (c === 0x2b || c === 0x2d) {
          this.add(c);
          c = this.get();
          if (!isDigit(c)) {
            this.errorMessage = "invalid number; expected digit after exponent sign";
            return "parse_error";
          }
        } else if (!isDigit(c)) {
          this.errorMessage = "invalid number; expected '+', '-', or digit after exponent";
          return "parse_error";
        }
        this.add(c);
        state = "any2";
      }
    }
    this.unget();
    const text = String.fromCharCode(...this.tokenBuffer);
    if (type === "value_unsigned") {
      const v = BigInt(text);
      if (v <= 0xffffffffffffffffn) {
        this.valueInt = v;
        return "value_unsigned";
      }
    } else if (type === "value_integer") {
      const v = BigInt(text);
      if (v >= -(2n ** 63n) && v < 2n ** 63n) {
        this.valueInt = v;
        return "value_integer";
      }
    }
    this.valueFloat = Number(text);
    return "value_float";
  }

  stringValue() {
    return Buffer.from(this.tokenBuffer).toString("utf8");
  }
}

// ---------------------------------------------------------------------------------------------
// parser
// ---------------------------------------------------------------------------------------------

/**
 * json::parse(bytes): the value, or a thrown JsonError (parse_error.101, out_of_range.406).
 * @param {Uint8Array | string} input @returns {JsonValue}
 */
export function parseJson(input) {
  const lexer = new Lexer(typeof input === "string" ? Buffer.from(input, "utf8") : input);
  let last = /** @type {Token} */ ("uninitialized");
  const getToken = () => (last = lexer.scan());
  /** @param {Token} expected @param {string} context */
  const fail = (expected, context) => {
    let msg = `syntax error while parsing ${context} - `;
    if (last === "parse_error") {
      msg += `${lexer.errorMessage}; last read: '${lexer.tokenStringBytes().toString("latin1")}'`;
    } else {
      msg += `unexpected ${T[last]}`;
    }
    if (expected !== "uninitialized") msg += `; expected ${T[expected]}`;
    const err = new JsonError("parse_error", 101, `parse error${lexer.position()}: ${msg}`);
    // the what() bytes, exactly (the token string may hold any byte)
    err.bytes = Buffer.concat([
      Buffer.from(`[json.exception.parse_error.101] parse error${lexer.position()}: syntax error while parsing ${context} - `, "latin1"),
      last === "parse_error"
        ? Buffer.concat([Buffer.from(`${lexer.errorMessage}; last read: '`, "latin1"), lexer.tokenStringBytes(), Buffer.from("'")])
        : Buffer.from(`unexpected ${T[last]}`),
      Buffer.from(expected !== "uninitialized" ? `; expected ${T[expected]}` : ""),
    ]);
    return err;
  };

  getToken();
  /** @type {(JsonValue[] | Map<string, JsonValue>)[]} */
  const stack = [];
  /** @type {string[]} */
  const keys = [];
  /** @type {JsonValue} */
  let result = null;
  /** @param {JsonValue} v */
  const emit = (v) => {
    const top = stack.at(-1);
    if (top === undefined) result = v;
    else if (Array.isArray(top)) top.push(v);
    else top.set(/** @type {string} */ (keys.at(-1)), v);
  };

  let skipToState = false;
  for (;;) {
    if (!skipToState) {
      switch (last) {
        case "begin_object": {
          const obj = new Map();
          emit(obj);
          const first = getToken();
          if (first === "end_object") break;
          if (first !== "value_string") throw fail("value_string", "object key");
          const key = lexer.stringValue();
          if (getToken() !== "name_separator") throw fail("name_separator", "object separator");
          stack.push(obj);
          keys.push(key);
          getToken();
          continue;
        }
        case "begin_array": {
          const arr = /** @type {JsonValue[]} */ ([]);
          emit(arr);
          if (getToken() === "end_array") break;
          stack.push(arr);
          keys.push("");
          continue;
        }
        case "value_float":
          if (!Number.isFinite(lexer.valueFloat)) {
            throw new JsonError("out_of_range", 406, `number overflow parsing '${lexer.tokenStringBytes().toString("latin1")}'`);
          }
          emit(new JFloat(lexer.valueFloat));
          break;
        case "literal_false":
          emit(false);
          break;
        case "literal_true":
          emit(true);
          break;
        case "literal_null":
          emit(null);
          break;
        case "value_integer":
        case "value_unsigned":
          emit(lexer.valueInt);
          break;
        case "value_string":
          emit(lexer.stringValue());
          break;
        case "parse_error":
          throw fail("uninitialized", "value");
        default:
          throw fail("literal_or_value", "value");
      }
    } else {
      skipToState = false;
    }
    const top = stack.at(-1);
    if (top === undefined) break;
    if (Array.isArray(top)) {
      if (getToken() === "value_separator") {
        getToken();
        continue;
      }
      if (last === "end_array") {
        stack.pop();
        keys.pop();
        skipToState = true;
        continue;
      }
      throw fail("end_array", "array");
    }
    if (getToken() === "value_separator") {
      if (getToken() !== "value_string") throw fail("value_string", "object key");
      keys[keys.length - 1] = lexer.stringValue();
      if (getToken() !== "name_separator") throw fail("name_separator", "object separator");
      getToken();
      continue;
    }
    if (last === "end_object") {
      stack.pop();
      keys.pop();
      skipToState = true;
      continue;
    }
    throw fail("end_object", "object");
  }
  if (getToken() !== "end_of_input") throw fail("end_of_input", "value");
  return result;
}

// ---------------------------------------------------------------------------------------------
// dump
// ---------------------------------------------------------------------------------------------

/** nlohmann's to_chars for a double: shortest digits, then format_buffer(-4, 15). @param {number} x */
export function formatDouble(x) {
  if (!Number.isFinite(x)) return "null";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const m = /^(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(Math.abs(x).toExponential());
  const digits = `${m?.[1] ?? "0"}${m?.[2] ?? ""}`;
  const k = digits.length;
  const n = Number(m?.[3] ?? "0") + 1; // position of the decimal point
  if (k <= n && n <= 15) return `${sign}${digits}${"0".repeat(n - k)}.0`;
  if (0 < n && n <= 15) return `${sign}${digits.slice(0, n)}.${digits.slice(n)}`;
  if (-4 < n && n <= 0) return `${sign}0.${"0".repeat(-n)}${digits}`;
  const e = n - 1;
  const exp = `e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  return `${sign}${k === 1 ? digits : `${digits[0]}.${digits.slice(1)}`}${exp}`;
}

/** @param {string} a @param {string} b */
const byUtf8 = (a, b) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));

/** json::dump(): compact, keys sorted. @param {JsonValue} v @returns {string} */
export function dumpJson(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : formatDouble(v);
  if (v instanceof JFloat) return formatDouble(v.value);
  if (typeof v === "string") {
    if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(v)) {
      throw new JsonError("type_error", 316, "invalid UTF-8 byte in string");
    }
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) return `[${v.map(dumpJson).join(",")}]`;
  const entries = v instanceof Map ? [...v.entries()] : Object.entries(v);
  entries.sort(([a], [b]) => byUtf8(a, b));
  return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${dumpJson(x)}`).join(",")}}`;
}

/**
 * What nlohmann's dump does with a std::string holding `bytes`: the JSON text, or the
 * type_error.316 it throws for bytes that are not UTF-8.
 * @param {Buffer} bytes @returns {string}
 */
export function dumpByteString(bytes) {
  let i = 0;
  while (i < bytes.length) {
    const c = /** @type {number} */ (bytes[i]);
    /** @type {number[]} */
    let ranges = [];
    if (c <= 0x7f) ranges = [];
    else if (c >= 0xc2 && c <= 0xdf) ranges = [0x80, 0xbf];
    else if (c === 0xe0) ranges = [0xa0, 0xbf, 0x80, 0xbf];
    else if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) ranges = [0x80, 0xbf, 0x80, 0xbf];
    else if (c === 0xed) ranges = [0x80, 0x9f, 0x80, 0xbf];
    else if (c === 0xf0) ranges = [0x90, 0xbf, 0x80, 0xbf, 0x80, 0xbf];
    else if (c >= 0xf1 && c <= 0xf3) ranges = [0x80, 0xbf, 0x80, 0xbf, 0x80, 0xbf];
    else if (c === 0xf4) ranges = [0x80, 0x8f, 0x80, 0xbf, 0x80, 0xbf];
    else throw utf8Error(i, c);
    let j = i + 1;
    for (let r = 0; r < ranges.length; r += 2, j++) {
      if (j >= bytes.length) {
        throw new JsonError("type_error", 316, `incomplete UTF-8 string; last byte: 0x${hex2(/** @type {number} */ (bytes[bytes.length - 1]))}`);
      }
      const b = /** @type {number} */ (bytes[j]);
      if (b < /** @type {number} */ (ranges[r]) || b > /** @type {number} */ (ranges[r + 1])) throw utf8Error(j, b);
    }
    i = j;
  }
  return JSON.stringify(bytes.toString("utf8"));
}
/** @param {number} b */
const hex2 = (b) => b.toString(16).toUpperCase().padStart(2, "0");
/** @param {number} i @param {number} b */
const utf8Error = (i, b) => new JsonError("type_error", 316, `invalid UTF-8 byte at index ${i}: 0x${hex2(b)}`);

// ---------------------------------------------------------------------------------------------
// j.value(key, default) and get<T>()
// ---------------------------------------------------------------------------------------------

/** basic_json::type_name() @param {JsonValue | undefined} v */
export function typeName(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean") return "boolean";
  if (typeof v === "string") return "string";
  if (typeof v === "bigint" || typeof v === "number" || v instanceof JFloat) return "number";
  if (Array.isArray(v)) return "array";
  return "object";
}

/** @param {JsonValue | undefined} v @returns {v is Map<string, JsonValue>} */
export const isObject = (v) => v instanceof Map;
/** @param {JsonValue | undefined} v @returns {v is bigint} */
export const isInteger = (v) => typeof v === "bigint";
/** @param {JsonValue | undefined} v */
export const isNumber = (v) => typeof v === "bigint" || v instanceof JFloat;

/** @param {string} what @param {JsonValue | undefined} v */
const typeError = (what, v) => new JsonError("type_error", 302, `type must be ${what}, but is ${typeName(v)}`);

/** double → int as the x86 cvttsd2si instruction does (out of range: INT_MIN). @param {number} x @param {number} bits */
function truncToInt(x, bits) {
  const t = Math.trunc(x);
  const min = -(2 ** (bits - 1));
  if (!Number.isFinite(t) || t < min || t >= 2 ** (bits - 1)) return BigInt(min);
  return BigInt(t);
}

/** get<int>(): numbers and booleans convert; anything else throws 302. @param {JsonValue | undefined} v @returns {number} */
export function toInt(v) {
  if (typeof v === "bigint") return Number(BigInt.asIntN(32, v));
  if (v instanceof JFloat) return Number(truncToInt(v.value, 32));
  if (typeof v === "boolean") return v ? 1 : 0;
  throw typeError("number", v);
}

/** get<int64_t>(): numbers only (a boolean throws 302). @param {JsonValue | undefined} v @returns {bigint} */
export function toInt64(v) {
  if (typeof v === "bigint") return BigInt.asIntN(64, v);
  if (v instanceof JFloat) return truncToInt(v.value, 64);
  throw typeError("number", v);
}

/** get<float>(): numbers and booleans; the value is rounded to a C float. @param {JsonValue | undefined} v */
export function toFloat(v) {
  if (typeof v === "bigint") return Math.fround(Number(v));
  if (v instanceof JFloat) return Math.fround(v.value);
  if (typeof v === "boolean") return v ? 1 : 0;
  throw typeError("number", v);
}

/** get<bool>() @param {JsonValue | undefined} v @returns {boolean} */
export function toBool(v) {
  if (typeof v === "boolean") return v;
  throw typeError("boolean", v);
}

/** get<std::string>() @param {JsonValue | undefined} v @returns {string} */
export function toStr(v) {
  if (typeof v === "string") return v;
  throw typeError("string", v);
}

/**
 * j.value(key, fallback) with the conversion `get`: 306 when j is not an object.
 * @template R @param {JsonValue} j @param {string} key @param {R} fallback @param {(v: JsonValue) => R} get @returns {R}
 */
export function valueOf(j, key, fallback, get) {
  if (!(j instanceof Map)) throw new JsonError("type_error", 306, `cannot use value() with ${typeName(j)}`);
  return j.has(key) ? get(/** @type {JsonValue} */ (j.get(key))) : fallback;
}

/** @param {JsonValue} j @param {string} key @param {number} fallback */
export const valueInt = (j, key, fallback) => valueOf(j, key, fallback, toInt);
/** @param {JsonValue} j @param {string} key @param {bigint} fallback */
export const valueInt64 = (j, key, fallback) => valueOf(j, key, fallback, toInt64);
/** @param {JsonValue} j @param {string} key @param {number} fallback */
export const valueFloat = (j, key, fallback) => valueOf(j, key, fallback, toFloat);
/** @param {JsonValue} j @param {string} key @param {boolean} fallback */
export const valueBool = (j, key, fallback) => valueOf(j, key, fallback, toBool);
/** @param {JsonValue} j @param {string} key @param {string} fallback */
export const valueStr = (j, key, fallback) => valueOf(j, key, fallback, toStr);
