// JSON.parse that keeps integers beyond 2^53 exact (as bigint). Fast path: plain JSON.parse when the
// text holds no run of 16+ digits, which is the only way an unsafe integer can appear.
import { DecodeError } from "../errors.ts";

const LONG_DIGITS = /\d{16}/;

export class JsonError extends DecodeError {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(message);
  }
}

export function parseJson(text: string): unknown {
  if (!LONG_DIGITS.test(text)) {
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new JsonError(`invalid JSON: ${(e as Error).message}`, -1);
    }
  }
  return new Parser(text).parseDocument();
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
      const k = this.string();
      this.ws();
      if (this.s[this.i] !== ":") this.fail("expected ':'");
      this.i++;
      o[k] = this.value();
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
  number(): number | bigint {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(this.s.slice(this.i, this.i + 400));
    if (!m) return this.fail("bad number");
    this.i += m[0].length;
    if (!m[2] && !m[3]) {
      const n = Number(m[0]);
      return Number.isSafeInteger(n) ? n : BigInt(m[0]);
    }
    return Number(m[0]);
  }
}
