// A lossless JSON tree for the mutator: numbers keep their text, objects keep their key order and
// may hold the same key twice, and raw text can be spliced in where JSON would not allow it.
// parse(text) -> tree -> write(tree) gives the text back byte for byte when the input is compact
// (no whitespace outside strings: Kafka Connect's JsonConverter writes it that way).

export class Num {
  constructor(readonly text: string) {}
}
/** Written verbatim: invalid escapes, bad numbers, anything JSON.stringify would not produce. */
export class Raw {
  constructor(readonly text: string) {}
}
export class Obj {
  constructor(public entries: Array<[string | Raw, J]> = []) {}
  get(k: string): J | undefined {
    for (const [key, v] of this.entries) if (key === k) return v;
    return undefined;
  }
  has(k: string): boolean {
    return this.entries.some(([key]) => key === k);
  }
  /** Replaces the first entry `k` (or appends it). */
  set(k: string | Raw, v: J): this {
    const i = this.entries.findIndex(([key]) => key === k);
    if (i >= 0) this.entries[i] = [k, v];
    else this.entries.push([k, v]);
    return this;
  }
  delete(k: string): this {
    this.entries = this.entries.filter(([key]) => key !== k);
    return this;
  }
  /** An obj field, or throws (for navigating known shapes). */
  obj(k: string): Obj {
    const v = this.get(k);
    if (!(v instanceof Obj)) throw new Error(`${k} is not an object`);
    return v;
  }
  keys(): string[] {
    return this.entries.map(([k]) => (typeof k === "string" ? k : k.text));
  }
}
export type J = null | boolean | string | Num | Raw | Obj | J[];

export function clone(v: J): J {
  if (v instanceof Obj) return new Obj(v.entries.map(([k, x]) => [k, clone(x)]));
  if (Array.isArray(v)) return v.map(clone);
  return v;
}

/** JSON.stringify of a string, but a lone surrogate stays a lone surrogate (well-formed stringify escapes it anyway). */
const str = (s: string) => JSON.stringify(s);

export function write(v: J): string {
  if (v === null) return "null";
  if (v === true) return "true";
  if (v === false) return "false";
  if (typeof v === "string") return str(v);
  if (v instanceof Num || v instanceof Raw) return v.text;
  if (Array.isArray(v)) return `[${v.map(write).join(",")}]`;
  return `{${v.entries.map(([k, x]) => `${typeof k === "string" ? str(k) : k.text}:${write(x)}`).join(",")}}`;
}

/** Parses JSON text; numbers stay text (Num). Throws on invalid JSON. */
export function parse(text: string): J {
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\r\n".includes(text[i]!)) i++;
  };
  const fail = (m: string): never => {
    throw new SyntaxError(`${m} at ${i}`);
  };
  const value = (): J => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const o = new Obj();
      ws();
      if (text[i] === "}") return i++, o;
      for (;;) {
        ws();
        const k = string();
        ws();
        if (text[i++] !== ":") fail("expected :");
        o.entries.push([k, value()]);
        ws();
        const d = text[i++];
        if (d === "}") return o;
        if (d !== ",") fail("expected , or }");
      }
    }
    if (c === "[") {
      i++;
      const a: J[] = [];
      ws();
      if (text[i] === "]") return i++, a;
      for (;;) {
        a.push(value());
        ws();
        const d = text[i++];
        if (d === "]") return a;
        if (d !== ",") fail("expected , or ]");
      }
    }
    if (c === '"') return string();
    if (text.startsWith("true", i)) return (i += 4), true;
    if (text.startsWith("false", i)) return (i += 5), false;
    if (text.startsWith("null", i)) return (i += 4), null;
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) return fail("unexpected character");
    i += m[0].length;
    return new Num(m[0]);
  };
  const string = (): string => {
    if (text[i] !== '"') fail("expected string");
    const start = i++;
    while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    if (i >= text.length) fail("unterminated string");
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const v = value();
  ws();
  if (i !== text.length) fail("trailing data");
  return v;
}
