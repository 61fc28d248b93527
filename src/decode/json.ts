// JSON.parse that keeps every number exact: integers beyond 2^53 as bigint, and non-integers a
// double cannot hold (more than 15 significant digits, or out of range) as JsonNumber with their
// text. Values stay exact from the wire to PostgreSQL: a decimal is written from its digits.
//
// Fast path: one scan of the text outside its strings finds the numbers; those a double holds
// exactly are left to JSON.parse, the others are rewritten to marked strings first and turned back
// after parsing. Debezium 3 events always carry ts_us/ts_ns (16 and 19 digits), so this path is the
// usual one.
import { DecodeError } from "../errors.ts";

/** A JSON number a double cannot hold exactly, kept as its text. */
export class JsonNumber {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export class JsonError extends DecodeError {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(message);
  }
}

const isNumberChar = (c: number) => (c >= 48 && c <= 57) || c === 46 || c === 45 || c === 43 || c === 101 || c === 69;
const NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;
// a noncharacter: valid raw inside a JSON string, never in real data (its presence sends the text to the exact parser)
const MARK = "\uFDD0";

/** True when the token is a JSON number whose value a double holds exactly. */
function exactAsDouble(token: string): boolean {
  let integer = true;
  for (let i = token.charCodeAt(0) === 45 ? 1 : 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    if (c < 48 || c > 57) {
      integer = false;
      break;
    }
  }
  if (integer) return token.length > 1 && token.length < 16 ? true : Number.isSafeInteger(Number(token)) && NUMBER.test(token);
  const m = NUMBER.exec(token);
  if (!m) return false;
  if (!m[2] && !m[3]) return Number.isSafeInteger(Number(token));
  const digits = (m[1]! + (m[2]?.slice(1) ?? "")).replace(/^0+/, "").replace(/0+$/, "");
  const exp = m[3] ? Number(m[3].slice(1)) : 0;
  return digits.length <= 15 && Math.abs(exp) < 290;
}

/**
 * One pass over the text outside its strings (a string is skipped with indexOf to its closing
 * quote): the members it has (one colon each, to find duplicate keys JSON.parse would drop) and the
 * number tokens a double cannot hold, rewritten to marked strings. Null when the text is not JSON.
 */
function scan(text: string): { keys: number; parts?: string[] } | null {
  const n = text.length;
  let keys = 0;
  let parts: string[] | undefined;
  let last = 0;
  let envelope: number | undefined;
  for (let i = 0; i < n; ) {
    const c = text.charCodeAt(i);
    if (c === 34) {
      let j = text.indexOf('"', i + 1);
      for (;;) {
        if (j === -1) return null;
        let b = j - 1;
        while (text.charCodeAt(b) === 92) b--;
        if ((j - b) % 2 === 1) break;
        j = text.indexOf('"', j + 1);
      }
      i = j + 1;
    } else if (c === 58) {
      keys++;
      i++;
    } else if ((c >= 48 && c <= 57) || c === 45) {
      let end = i + 1;
      let exponent = false;
      for (; end < n; end++) {
        const d = text.charCodeAt(end);
        if (!isNumberChar(d)) break;
        if (d === 101 || d === 69) exponent = true;
      }
      if ((end - i >= 16 || exponent) && !debeziumTime(text, i, (envelope ??= text.lastIndexOf('"source":{'))) && !exactAsDouble(text.slice(i, end))) {
        (parts ??= []).push(text.slice(last, i), `"${MARK}${text.slice(i, end)}"`);
        last = end;
      }
      i = end;
    } else i++;
  }
  if (parts) parts.push(text.slice(last));
  return { keys, parts };
}

/** Debezium's own ts_us/ts_ns (in "source" and after it) are never read: no need to keep them exact. */
function debeziumTime(text: string, at: number, envelope: number): boolean {
  let before = at - 1;
  while (before >= 0 && (text.charCodeAt(before) === 32 || text.charCodeAt(before) === 10 || text.charCodeAt(before) === 13 || text.charCodeAt(before) === 9)) before--;
  return text.charCodeAt(before) === 58 && envelope >= 0 && envelope < before && (text.startsWith('"ts_us"', before - 7) || text.startsWith('"ts_ns"', before - 7));
}

export function parseJson(text: string): unknown {
  const s = scan(text);
  // not JSON: the exact parser names the position of the problem
  if (!s) return new Parser(text).parseDocument();
  // a marker-like string in the input could pass for a number: the exact parser reads it instead
  if (s.parts && (text.includes(MARK) || /\\u[fF][dD][dD]0/.test(text))) return new Parser(text).parseDocument();
  let doc: unknown;
  try {
    doc = s.parts ? restore(JSON.parse(s.parts.join(""))) : JSON.parse(text);
  } catch (e) {
    if (e instanceof JsonError) throw e;
    return new Parser(text).parseDocument();
  }
  // JSON.parse keeps the last of duplicate keys silently: fewer keys than the text has means duplicates
  if (keyCount(doc) !== s.keys) return new Parser(text).parseDocument();
  return doc;
}

/** Keys of every object in a parsed document. */
function keyCount(v: unknown): number {
  if (v === null || typeof v !== "object" || v instanceof JsonNumber) return 0;
  let n = 0;
  if (Array.isArray(v)) {
    for (const x of v) if (x !== null && typeof x === "object") n += keyCount(x);
    return n;
  }
  for (const k in v) {
    n++;
    const x = (v as Record<string, unknown>)[k];
    if (x !== null && typeof x === "object") n += keyCount(x);
  }
  return n;
}

/** Sets an own property, as JSON.parse does: `__proto__` is a key like any other, never the prototype. */
function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__") Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/** Marked strings back to exact numbers. */
function restore(v: unknown): unknown {
  if (typeof v === "string") return v.charCodeAt(0) === 0xfdd0 ? exactNumber(v.slice(1)) : v;
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = restore(v[i]);
    return v;
  }
  const o = v as Record<string, unknown>;
  for (const k in o) {
    if (k.charCodeAt(0) === 0xfdd0) throw new JsonError(`invalid JSON: a number where a key is expected (${k.slice(1, 40)})`, -1);
    setOwn(o, k, restore(o[k]));
  }
  return o;
}

function exactNumber(token: string): number | bigint | JsonNumber {
  const m = NUMBER.exec(token);
  if (!m) throw new JsonError(`invalid JSON: bad number ${token.slice(0, 40)}`, -1);
  if (!m[2] && !m[3]) {
    const n = Number(token);
    return Number.isSafeInteger(n) ? n : BigInt(token);
  }
  return new JsonNumber(token);
}

class Parser {
  i = 0;
  constructor(readonly s: string) {}

  parseDocument(): unknown {
    const v = this.value();
    this.ws();
    if (this.i !== this.s.length) this.fail("unexpected data after the document");
    return v;
  }
  fail(msg: string): never {
    throw new JsonError(`invalid JSON at position ${this.i}: ${msg}`, this.i);
  }
  ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 32 || c === 10 || c === 13 || c === 9) this.i++;
      else break;
    }
  }
  value(): unknown {
    this.ws();
    const c = this.s[this.i];
    if (c === "{") return this.object();
    if (c === "[") return this.array();
    if (c === '"') return this.string();
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number();
    if (this.s.startsWith("true", this.i)) return (this.i += 4), true;
    if (this.s.startsWith("false", this.i)) return (this.i += 5), false;
    if (this.s.startsWith("null", this.i)) return (this.i += 4), null;
    return this.fail(c === undefined ? "unexpected end" : `unexpected ${JSON.stringify(c)}`);
  }
  object(): Record<string, unknown> {
    this.i++;
    const o: Record<string, unknown> = {};
    this.ws();
    if (this.s[this.i] === "}") return this.i++, o;
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail("expected a string key");
      const keyAt = this.i;
      const k = this.string();
      if (Object.hasOwn(o, k)) {
        this.i = keyAt;
        this.fail(`duplicate key ${JSON.stringify(k.slice(0, 60))}`);
      }
      this.ws();
      if (this.s[this.i] !== ":") this.fail("expected ':'");
      this.i++;
      setOwn(o, k, this.value());
      this.ws();
      const c = this.s[this.i++];
      if (c === "}") return o;
      if (c !== ",") this.fail("expected ',' or '}'");
    }
  }
  array(): unknown[] {
    this.i++;
    const a: unknown[] = [];
    this.ws();
    if (this.s[this.i] === "]") return this.i++, a;
    for (;;) {
      a.push(this.value());
      this.ws();
      const c = this.s[this.i++];
      if (c === "]") return a;
      if (c !== ",") this.fail("expected ',' or ']'");
    }
  }
  string(): string {
    const start = this.i;
    this.i++;
    let escaped = false;
    for (;;) {
      const c = this.s.charCodeAt(this.i);
      if (Number.isNaN(c)) this.fail("unterminated string");
      if (c === 92) {
        escaped = true;
        this.i += 2;
        continue;
      }
      this.i++;
      if (c === 34) break;
    }
    const raw = this.s.slice(start, this.i);
    if (!escaped) return raw.slice(1, -1);
    try {
      return JSON.parse(raw);
    } catch {
      return this.fail("bad string escape");
    }
  }
  number(): number | bigint | JsonNumber {
    const s = this.s;
    const start = this.i;
    let i = start;
    while (i < s.length && /[-+.eE0-9]/.test(s[i]!)) i++;
    const token = s.slice(start, i);
    if (!NUMBER.test(token)) return this.fail("bad number");
    this.i = i;
    return exactAsDouble(token) ? Number(token) : exactNumber(token);
  }
}
