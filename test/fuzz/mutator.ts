// A structure-aware mutator over real Debezium 3.6.1 records (test/fixtures/debezium, both JSON
// forms, every encoding mode): each mutant is a hostile variant of a recorded change event, with its
// class and the outcome the daemon promises for it (README "Values exactly as the source had them",
// "Dead letters"): dead-lettered (stage, code, the column named), applied exactly (the stored value
// stated, every other column equal to the unmutated reference row of the same record), or ignored.
// Everything is deterministic from one seed. The good stream around the mutants is made here too.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { FIXTURES, SOURCE } from "./table.ts";
import { clone, type J, Num, Obj, parse, Raw, write } from "./tree.ts";

// ---------------------------------------------------------------------------------------------
// randomness

export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 0x9e3779b9;
  }
  /** mulberry32 */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

// ---------------------------------------------------------------------------------------------
// seeds: the recorded c/r events of every fixture file

/** The recorded encoding modes that configure a mapping (manifest.json, without the converter keys). */
export type Modes = Record<string, string>;

export interface Topic {
  index: number;
  /** the fixture file */
  file: string;
  form: "schema" | "schemaless";
  modes: Modes;
  seeds: Seed[];
}

export interface Seed {
  topic: number;
  index: number;
  /** source row id of the recorded event */
  row: number;
  op: "c" | "r";
  key: J;
  value: J;
  headers: Array<[string, string]>;
}

const manifest = JSON.parse(readFileSync(`${FIXTURES}manifest.json`, "utf8")) as { files: Array<{ file: string; form: string; topics: string[]; modes: Modes }> };

/** Columns left out of every generated event: the 10 kB TOASTed values (events stay small; absent in an insert means NULL or the default, alike for mutants and references). */
const STRIPPED = /^c_toast_/;

export function loadTopics(): Topic[] {
  return manifest.files.map((f, index) => {
    const modes = Object.fromEntries(Object.entries(f.modes).filter(([k]) => !k.includes("converter")));
    const dbl = modes["decimal.handling.mode"] === "double";
    const seeds: Seed[] = [];
    for (const line of readFileSync(`${FIXTURES}${f.file}`, "utf8").split("\n")) {
      if (!line) continue;
      const r = JSON.parse(line) as { topic: string; key: string | null; value: string | null; headers: Array<[string, string]> };
      if (r.topic !== f.topics[0] || r.key === null || r.value === null) continue;
      const value = parse(r.value);
      const env = envelopeOf(value);
      const op = env.get("op");
      if (op !== "c" && op !== "r") continue;
      const after = env.obj("after");
      const row = Number((after.get("id") as Num).text);
      // decimal.handling.mode=double makes rows 2 (money) and 5 (numeric(40,20)) unstorable: see test/fidelity.test.ts
      if (dbl && (row === 2 || row === 5)) continue;
      for (const k of after.keys()) if (STRIPPED.test(k)) after.delete(k);
      env.set("before", null);
      seeds.push({ topic: index, index: seeds.length, row, op, key: parse(r.key), value, headers: r.headers.filter(([h]) => !/^__debezium\.(old|new)key$/.test(h)) });
    }
    return { index, file: f.file, form: f.form as Topic["form"], modes, seeds };
  });
}

/** The envelope of a value (the payload of the `{schema, payload}` form). */
export function envelopeOf(value: J): Obj {
  if (!(value instanceof Obj)) throw new Error("not an object");
  const p = value.get("payload");
  return p instanceof Obj && value.has("schema") ? p : value;
}
/** The key payload object (the payload of the `{schema, payload}` form). */
export function keyPayloadOf(key: J): Obj {
  if (!(key instanceof Obj)) throw new Error("not an object");
  const p = key.get("payload");
  return p instanceof Obj && key.has("schema") ? p : key;
}

// ---------------------------------------------------------------------------------------------
// expectations

/** What a stored column must read as (`col::text`). */
export type Expected =
  | null
  | { text: string }
  /** the text PostgreSQL gives this literal read as the column's type: the value exactly as sent */
  | { literal: string }
  /** md5 and length of `col::text` (values too long to compare as text) */
  | { md5: string; length: number };

/** What must become of one record. "applied" and "ignored" leave no dead letter (the row expectation tells them apart). */
export type RecordExpect =
  | { kind: "applied" }
  | { kind: "ignored" }
  | {
      kind: "dead";
      stage?: "decode" | "apply";
      /** acceptable error codes */
      codes?: string[];
      /** the column the error must name (decode stage; an apply-stage error from PostgreSQL is only noted when it does not) */
      column?: string;
      /** the record's exact bytes must be kept */
      bytes?: "key" | "value";
      /** value_size and value_sha256 of a capped value */
      size?: number;
      sha256?: string;
    };

export type RowExpect =
  | { kind: "absent" }
  | {
      kind: "row";
      /** every column not listed in `values` equals this reference row's (bookkeeping columns excluded) */
      reference: number;
      values: Record<string, Expected>;
      /** the stored source position (_cdc_commit_lsn, _cdc_lsn) */
      position?: [string, string];
    };

export interface Outcome {
  records: RecordExpect[];
  row: RowExpect;
}

export interface FuzzRecord {
  key: string | Uint8Array | null;
  value: string | Uint8Array | null;
  headers?: Array<[string, string]>;
  /** filled in by the stream: the offset it was produced at */
  offset?: number;
}

/** A record still to be stamped with its source position (in stream order), or already final. */
export interface PendingRecord {
  render(clock: Clock): FuzzRecord;
  /** records of one mutant or good key that must stay adjacent (same batch): key aliases */
  tight?: boolean;
}

export interface Mutant {
  cls: string;
  variant: string;
  topic: number;
  /** the row the mutant is about (fresh, never touched by the good stream) */
  id: number;
  records: PendingRecord[];
  /** any one of these is right */
  outcomes: Outcome[];
  /** the right outcome is not settled: the observed one is reported, never a failure */
  undecided?: string;
}

// ---------------------------------------------------------------------------------------------
// source positions

export class Clock {
  lsn = 40_000_000n;
  lastCommit = 39_999_000n;
  txId = 1000;
  /** Stamps a streamed (c/u/d) or snapshot (r) envelope with the next position. */
  stamp(env: Obj, op: string): void {
    this.lsn += 100n;
    const source = env.get("source") instanceof Obj ? env.obj("source") : new Obj();
    source.set("lsn", new Num(String(this.lsn)));
    source.set("txId", new Num(String(this.txId)));
    if (op === "r") {
      source.set("snapshot", "true");
      source.set("sequence", JSON.stringify([null, String(this.lsn)]));
    } else {
      source.set("snapshot", null);
      source.set("sequence", JSON.stringify([String(this.lastCommit), String(this.lsn)]));
      this.lastCommit = this.lsn + 50n;
      this.txId++;
    }
    env.set("source", source);
  }
}

// ---------------------------------------------------------------------------------------------
// building events from seeds

const COLUMN_TYPE = new Map(SOURCE.columns.map((c) => [c.name, c.type]));
export const columnType = (col: string) => COLUMN_TYPE.get(col)!;

/** A copy of the seed for row `id`: key and after image carry the id; op as given. */
function cloneFor(seed: Seed, id: number, op?: string): { key: Obj; value: Obj; env: Obj; after: Obj } {
  const key = clone(seed.key) as Obj;
  keyPayloadOf(key).set("id", new Num(String(id)));
  const value = clone(seed.value) as Obj;
  const env = envelopeOf(value);
  const after = env.obj("after");
  after.set("id", new Num(String(id)));
  if (op) env.set("op", op);
  return { key, value, env, after };
}

/**
 * A record stamped with the next source position when it is rendered (in produce order); `post`
 * rewrites its serialized value (raw bytes), `stampAs` is the op whose kind of position it gets
 * (default: its own op).
 */
function stamped(key: J | string | null, value: Obj, headers: Array<[string, string]>, post?: (text: string) => string | Uint8Array, tight = false, stampAs?: string): PendingRecord {
  return {
    tight,
    render(clock) {
      const env = envelopeOf(value);
      clock.stamp(env, stampAs ?? (env.get("op") as string));
      const v = write(value);
      return { key: key === null ? null : typeof key === "string" ? key : write(key), value: post ? post(v) : v, headers };
    },
  };
}

/** A record built only when rendered (the good stream: 200k trees would not fit in memory). */
function lazy(build: () => PendingRecord, tight = false): PendingRecord {
  return { tight, render: (clock) => build().render(clock) };
}

/** A record with its final bytes (its position, if any, is its own). */
function fixed(r: FuzzRecord, tight = false): PendingRecord {
  return { tight, render: () => ({ ...r }) };
}

/** Changes the value of a recorded event's `after` field, keeping the form of the seed's mode. */
function setAfter(after: Obj, col: string, v: J): void {
  after.set(col, v);
}

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");

/** Two's-complement big-endian bytes of an integer, as Kafka Connect's Decimal sends it. */
export function unscaledBytes(n: bigint): Uint8Array {
  const out: number[] = [];
  let x = n;
  for (;;) {
    out.unshift(Number(x & 0xffn));
    const sign = x & 0x80n;
    x >>= 8n;
    if ((x === 0n && !sign) || (x === -1n && sign)) break;
  }
  return Uint8Array.from(out);
}

/** A decimal text as the seed's decimal.handling.mode sends it for `col` (scale: the column's, or the text's for unconstrained numeric). */
function decimalValue(topic: Topic, col: string, text: string): J {
  const mode = topic.modes["decimal.handling.mode"] ?? "precise";
  if (mode === "double") return new Num(text);
  if (mode === "string") return text;
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) throw new Error(`not a plain decimal: ${text}`);
  const type = columnType(col);
  const declared = /numeric\(\d+,(\d+)\)/.exec(type)?.[1];
  const scale = declared !== undefined ? Number(declared) : type === "money" ? 2 : (m[3] ?? "").length;
  const frac = (m[3] ?? "").padEnd(scale, "0");
  if (frac.length !== scale) throw new Error(`${text} has more than ${scale} decimals`);
  const unscaled = BigInt(`${m[1]}${m[2]}${frac}`);
  const value = b64(unscaledBytes(unscaled));
  if (declared === undefined && type !== "money") return new Obj([["scale", new Num(String(scale))], ["value", value]]);
  return value;
}

/** Ticks per second of a timestamp column under the seed's time.precision.mode. */
function timestampUnit(topic: Topic, col: string): bigint {
  if (topic.modes["time.precision.mode"] === "connect") return 1000n;
  const p = Number(/\((\d)\)/.exec(columnType(col))?.[1] ?? 6);
  return p <= 3 ? 1000n : 1_000_000n;
}

const DAY_MS = 86_400_000;
const daysOf = (iso: string) => Date.UTC(Number(iso.slice(0, -6)), Number(iso.slice(-5, -3)) - 1, Number(iso.slice(-2))) / DAY_MS;

// ---------------------------------------------------------------------------------------------
// good events

/** Text that JSON, UTF-8 and PostgreSQL all hold exactly (no NUL, no lone surrogate). */
const ALPHABET = ['a', 'b', 'Z', '0', ' ', '"', '\\', '":', ',', '{', '}', '\n', '\t', 'é', 'ß', '中', '文', '😀', '🙂', '\u2028', '\uFFFD', '%', "'", '$1', '--', 'NaN'];
export function randomText(rng: Rng, max = 24): string {
  let s = "";
  const n = rng.int(max + 1);
  for (let i = 0; i < n; i++) s += rng.pick(ALPHABET);
  return s;
}
const randomInt32 = (rng: Rng) => rng.int(2 ** 32) - 2 ** 31;

/** Final state of a key of the good stream: its c_int and c_text as stored (text), or deleted. */
export interface GoodKey {
  topic: number;
  id: number;
  /** the reference row of its seed */
  reference: number;
  final: { c_int: string | null; c_text: string | null } | null;
  records: PendingRecord[];
}

/** A c/r/u of the seed for `id`; with `v`, c_int and c_text replaced (the reference row keeps the seed's). */
function goodUpsert(seed: Seed, id: number, op: "c" | "r" | "u", v?: { c_int: number; c_text: string }): PendingRecord {
  return lazy(() => {
    const { key, value, after } = cloneFor(seed, id, op);
    if (v) {
      after.set("c_int", new Num(String(v.c_int)));
      after.set("c_text", v.c_text);
    }
    return stamped(key, value, seed.headers);
  });
}

/** The seed's own c_int and c_text as PostgreSQL stores them. */
function seedValues(seed: Seed): { c_int: string | null; c_text: string | null } {
  const after = envelopeOf(seed.value).obj("after");
  const i = after.get("c_int");
  const t = after.get("c_text");
  return { c_int: i instanceof Num ? i.text : null, c_text: typeof t === "string" ? t : null };
}

function goodDelete(seed: Seed, id: number): PendingRecord[] {
  const del = lazy(() => {
    const { key, value, env } = cloneFor(seed, id, "d");
    env.set("before", new Obj([["id", new Num(String(id))]]));
    env.set("after", null);
    return stamped(key, value, seed.headers);
  });
  return [del, lazy(() => fixed({ key: write(cloneFor(seed, id).key), value: null, headers: seed.headers }))];
}

// ---------------------------------------------------------------------------------------------
// mutants

export interface Ctx {
  rng: Rng;
  topics: Topic[];
  /** the reference row id of a seed */
  reference(seed: Seed): number;
  nextId(): number;
  /** a `c` of a seed for `id` with known c_int/c_text (a prelude row for mutants that act on a stored row) */
  prelude(seed: Seed, id: number): { record: PendingRecord; values: Record<string, Expected> };
  /** huge (16 MiB) values: how many are left to make, how many made */
  huge: { left: number; size: number; made?: number };
}

type Make = (g: Ctx, topic: Topic, seed: Seed, id: number) => Omit<Mutant, "cls" | "topic" | "id"> | null;

const absent: RowExpect = { kind: "absent" };
const dead = (e: Omit<Extract<RecordExpect, { kind: "dead" }>, "kind"> = {}): RecordExpect => ({ kind: "dead", ...e });
const deadDecode = (column?: string, codes = ["DECODE"]): RecordExpect => dead({ stage: "decode", codes, column });
const APPLIED: RecordExpect = { kind: "applied" };
const asRef = (g: Ctx, seed: Seed, values: Record<string, Expected> = {}): RowExpect => ({ kind: "row", reference: g.reference(seed), values });
/** one record, dead-lettered, no row */
const deadOnly = (variant: string, record: PendingRecord, e: RecordExpect): Omit<Mutant, "cls" | "topic" | "id"> => ({ variant, records: [record], outcomes: [{ records: [e], row: absent }] });
/** one record, applied: the row is the reference with these values */
const appliedAs = (g: Ctx, seed: Seed, variant: string, record: PendingRecord, values: Record<string, Expected> = {}) => ({
  variant,
  records: [record],
  outcomes: [{ records: [APPLIED], row: asRef(g, seed, values) }],
});

/** Marker replaced by raw bytes after serialization (a private-use character no seed contains). */
const MARK = "\uE000";
const MARK_BYTES = Buffer.from(MARK, "utf8");
function spliceBytes(text: string, bytes: Uint8Array): Uint8Array {
  const b = Buffer.from(text, "utf8");
  const at = b.indexOf(MARK_BYTES);
  if (at < 0) throw new Error("marker not found");
  return Buffer.concat([b.subarray(0, at), bytes, b.subarray(at + MARK_BYTES.length)]);
}

const INVALID_UTF8: Array<[string, number[]]> = [
  ["ff fe", [0xff, 0xfe]],
  ["overlong /", [0xc0, 0xaf]],
  ["CESU surrogate", [0xed, 0xa0, 0x80]],
  ["cut 4-byte sequence", [0xf0, 0x9f, 0x98]],
  ["lone continuation byte", [0x80]],
  ["5-byte lead", [0xf8, 0x88, 0x80, 0x80, 0x80]],
];

const md5 = (b: string | Uint8Array) => createHash("md5").update(b).digest("hex");
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** A value nested `depth` levels deep: arrays, or objects {"a": …}. */
const nested = (depth: number, kind: "array" | "object") => (kind === "array" ? `${"[".repeat(depth)}${"]".repeat(depth)}` : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`);

const HOSTILE_NAMES = [
  'id" OR 1=1 --',
  'c_text"; DROP TABLE fz0; --',
  "'); DELETE FROM fz0; --",
  "c_text' OR '1'='1",
  "$1",
  "C_TEXT",
  " c_text",
  "c_text ",
  "c_text\u0000",
  "_cdc_lsn",
  "_cdc_commit_lsn",
  "_cdc_synced_at",
  "_cdc_deleted_at",
  "constructor",
  "toString",
  "hasOwnProperty",
  "valueOf",
  "🙂",
  "",
  "\\",
  "c_text\nc_int",
  "a".repeat(70_000),
];

export const CLASSES: Array<{ name: string; weight: number; expect: string; make: Make }> = [
  {
    name: "invalid-utf8",
    weight: 6,
    expect: "dead letter at decode, code INVALID_UTF8, the record's bytes kept (value_bytes/key_bytes)",
    make(g, topic, seed, id) {
      const [what, bytes] = g.rng.pick(INVALID_UTF8);
      const where = g.rng.pick(["c_text", "field name", "key"] as const);
      const { key, value, after } = cloneFor(seed, id);
      if (where === "key") {
        keyPayloadOf(key).set("note", `k${MARK}k`);
        const r = stamped(null, value, seed.headers);
        const kb = spliceBytes(write(key), Uint8Array.from(bytes));
        return deadOnly(`${what} in the key`, { render: (c) => ({ ...r.render(c), key: kb }) }, dead({ stage: "decode", codes: ["INVALID_UTF8"], bytes: "key" }));
      }
      if (where === "c_text") after.set("c_text", `a${MARK}b`);
      else after.set(`x${MARK}y`, "v");
      return deadOnly(`${what} in ${where}`, stamped(key, value, seed.headers, (t) => spliceBytes(t, Uint8Array.from(bytes))), dead({ stage: "decode", codes: ["INVALID_UTF8"], bytes: "value" }));
    },
  },
  {
    name: "replacement-character",
    weight: 1,
    expect: "applied: a real U+FFFD (valid UTF-8) is text like any other",
    make(g, topic, seed, id) {
      const { key, value, after } = cloneFor(seed, id);
      after.set("c_text", "a\uFFFDb");
      return appliedAs(g, seed, "U+FFFD in c_text", stamped(key, value, seed.headers), { c_text: { text: "a\uFFFDb" } });
    },
  },
  {
    name: "lone-surrogate",
    weight: 4,
    expect: "dead letter at decode naming the column (a lone UTF-16 surrogate has no UTF-8 form)",
    make(g, topic, seed, id) {
      const [col, s] = g.rng.pick([
        ["c_text", "a\ud800b"],
        ["c_text", "\udfff"],
        ["c_text", "end\ud83d"],
        ["c_text", "\ude00\ud83d"],
        ["c_varchar", "x\udbff"],
        ["c_text_arr", ["ok", "\ud800"]],
      ] as Array<[string, J]>);
      const { key, value, after } = cloneFor(seed, id);
      after.set(col, s);
      return deadOnly(`${JSON.stringify(s)} in ${col}`, stamped(key, value, seed.headers), deadDecode(col));
    },
  },
  {
    name: "surrogate-pair",
    weight: 1,
    expect: "applied: an escaped surrogate pair is one character (U+1F600)",
    make(g, topic, seed, id) {
      const { key, value, after } = cloneFor(seed, id);
      after.set("c_text", "x\ud83d\ude00y");
      return appliedAs(g, seed, "\\ud83d\\ude00 in c_text", stamped(key, value, seed.headers), { c_text: { text: "x😀y" } });
    },
  },
  {
    name: "nul",
    weight: 3,
    expect: "dead letter: at decode, or at apply with SQLSTATE 22021/22P05 (text cannot hold NUL)",
    make(g, topic, seed, id) {
      const [col, v] = g.rng.pick([
        ["c_text", "a\u0000b"],
        ["c_text", "\u0000"],
        ["c_varchar", "\u0000x"],
        ["c_text_arr", ["a\u0000"]],
        ["c_jsonb", '{"a":"\\u0000"}'],
      ] as Array<[string, J]>);
      const { key, value, after } = cloneFor(seed, id);
      after.set(col, v);
      return deadOnly(`NUL in ${col}`, stamped(key, value, seed.headers), dead({ codes: ["DECODE", "22021", "22P05"], column: col }));
    },
  },
  {
    name: "long-decimal",
    weight: 4,
    expect: "applied exactly from its digits (numeric, numeric(40,20), inside jsonb), in the seed's decimal.handling.mode",
    make(g, topic, seed, id) {
      const { key, value, after } = cloneFor(seed, id);
      const [col, text] = g.rng.pick([
        ["c_numeric", "123456789012345678901234567890.123456789012345678901234567890"],
        ["c_numeric", "1.0000000000000000000001"],
        ["c_numeric", "-0.000000000000000000000000000001"],
        ["c_numeric", "98765432109876543210987654321098765432109876543210"],
        ["c_numeric_40_20", "12345678901234567890.12345678901234567891"],
        ["c_numeric_40_20", "-0.00000000000000000001"],
        ["c_jsonb", '{"x": 1.0000000000000000000001, "y": 123456789012345678901234567890.5, "z": [9007199254740993, 1e-400]}'],
      ] as const);
      setAfter(after, col, col === "c_jsonb" ? text : decimalValue(topic, col, text));
      return appliedAs(g, seed, `${col} <- ${text.slice(0, 40)}`, stamped(key, value, seed.headers), { [col]: { literal: text } });
    },
  },
  {
    name: "exponent-1e400",
    weight: 3,
    expect: "1e400 / 1e-400 into numeric applied exactly; into float8/float4/numeric(12,2) a dead letter",
    make(g, topic, seed, id) {
      const { key, value, after } = cloneFor(seed, id);
      const mode = topic.modes["decimal.handling.mode"] ?? "precise";
      const v = g.rng.pick(["1e400", "1E+400", "-1e400", "1e-400"]);
      const target = g.rng.pick(["c_numeric", "c_numeric", "c_double", "c_real", "c_numeric_12_2"]);
      const num = (t: string): J => (mode === "string" && target.startsWith("c_numeric") ? t : new Num(t));
      if (target === "c_numeric") {
        // precise sends base64 of the unscaled integer: 1e400 is 10^400 at scale 0, 1e-400 is 1 at scale 400
        if (mode === "precise") {
          const neg = v.startsWith("-");
          const exp = Number(/[eE]\+?(-?\d+)/.exec(v)![1]);
          const unscaled = exp >= 0 ? 10n ** BigInt(exp) : 1n;
          setAfter(after, target, new Obj([["scale", new Num(String(exp >= 0 ? 0 : -exp))], ["value", b64(unscaledBytes(neg ? -unscaled : unscaled))]]));
        } else setAfter(after, target, num(v));
        return appliedAs(g, seed, `${v} into ${target}`, stamped(key, value, seed.headers), { [target]: { literal: v } });
      }
      if (v === "1e-400") {
        // a float column reads 1e-400 as 0 (underflow): not this class
        setAfter(after, target, num("1e400"));
      } else setAfter(after, target, num(v));
      return deadOnly(`${v} into ${target}`, stamped(key, value, seed.headers), dead({ codes: ["DECODE", "22003"], column: target }));
    },
  },
  {
    name: "nan-infinity-misfit",
    weight: 4,
    expect: "NaN/±Infinity where the type cannot hold them: dead letter (int, bool, int[] at decode naming the column; numeric(12,2), date at apply)",
    make(g, topic, seed, id) {
      const s = g.rng.pick(["NaN", "Infinity", "-Infinity"]);
      const string = topic.modes["decimal.handling.mode"] === "string";
      const [col, v, e] = g.rng.pick([
        ["c_int", s, deadDecode("c_int")],
        ["c_smallint", s, deadDecode("c_smallint")],
        ["c_bigint", s, deadDecode("c_bigint")],
        ["c_bool", s, deadDecode("c_bool")],
        ["c_int_arr", [new Num("1"), s], deadDecode("c_int_arr")],
        // NaN fits numeric(12,2), ±Infinity does not; 'Infinity' is a date/timestamp PostgreSQL holds, NaN is not
        ["c_numeric_12_2", s === "-Infinity" ? (string ? "NEGATIVE_INFINITY" : s) : string ? "POSITIVE_INFINITY" : "Infinity", dead({ codes: ["DECODE", "22003"], column: "c_numeric_12_2" })],
        ["c_date", "NaN", dead({ codes: ["DECODE", "22007", "22008"], column: "c_date" })],
        ["c_ts6", "NaN", dead({ codes: ["DECODE", "22007", "22008"], column: "c_ts6" })],
      ] as Array<[string, J, RecordExpect]>);
      const { key, value, after } = cloneFor(seed, id);
      setAfter(after, col, v);
      return deadOnly(`${JSON.stringify(v)} into ${col}`, stamped(key, value, seed.headers), e);
    },
  },
  {
    name: "nan-infinity-fit",
    weight: 1,
    expect: "NaN/±Infinity into float4/float8 and NaN into numeric: applied exactly",
    make(g, topic, seed, id) {
      const [col, v, t] = g.rng.pick([
        ["c_double", "NaN", "NaN"],
        ["c_double", "Infinity", "Infinity"],
        ["c_real", "-Infinity", "-Infinity"],
        ["c_numeric", topic.modes["decimal.handling.mode"] === "string" ? "NAN" : "NaN", "NaN"],
      ] as const);
      const { key, value, after } = cloneFor(seed, id);
      setAfter(after, col, v);
      return appliedAs(g, seed, `${v} into ${col}`, stamped(key, value, seed.headers), { [col]: { text: t } });
    },
  },
  {
    name: "numeric-out-of-range",
    weight: 4,
    expect: "a number beyond the column's precision or range: dead letter (apply, SQLSTATE 22003), never rounded or wrapped",
    make(g, topic, seed, id) {
      const [col, text] = g.rng.pick([
        ["c_numeric_5_0", "123456"],
        ["c_numeric_12_2", "12345678901.5"],
        ["c_numeric_40_20", "123456789012345678901.5"],
        ["c_smallint", "32768"],
        ["c_int", "2147483648"],
        ["c_int", "-2147483649"],
        ["c_bigint", "9223372036854775808"],
        ["c_real", "3.5e38"],
        ["c_money", "92233720368547758.08"],
      ] as const);
      const { key, value, after } = cloneFor(seed, id);
      const numericish = col.startsWith("c_numeric") || col === "c_money";
      // money in double mode arrives rounded (a double): that is Debezium's loss, not this class
      if (col === "c_money" && topic.modes["decimal.handling.mode"] === "double") return null;
      setAfter(after, col, numericish ? decimalValue(topic, col, text) : new Num(text));
      return deadOnly(`${col} <- ${text}`, stamped(key, value, seed.headers), dead({ codes: ["DECODE", "22003"], column: col }));
    },
  },
  {
    name: "text-too-long",
    weight: 2,
    expect: "text longer than varchar(10)/char(5) allows: dead letter (22001 or at decode naming the column), never truncated",
    make(g, topic, seed, id) {
      const { key, value, after } = cloneFor(seed, id);
      const [col, v] = g.rng.pick([
        ["c_varchar", "12345678901"],
        ["c_varchar", "ééééééééééé"],
        ["c_varchar", "x".repeat(1000)],
        ["c_char", "abcdef"],
        ["c_char", "中文中文中文"],
      ] as const);
      after.set(col, v);
      return deadOnly(`${col} <- ${v.length} characters`, stamped(key, value, seed.headers), dead({ codes: ["DECODE", "22001"], column: col }));
    },
  },
  {
    name: "numeric-scale-excess",
    weight: 1,
    expect: "dead letter at decode naming the column: more decimals than numeric(p,s) keeps (PostgreSQL would round them)",
    make(g, topic, seed, id) {
      if (topic.modes["decimal.handling.mode"] === "precise") return null;
      const { key, value, after } = cloneFor(seed, id);
      setAfter(after, "c_numeric_12_2", decimalValue(topic, "c_numeric", "1.234"));
      return {
        variant: "1.234 into numeric(12,2)",
        records: [stamped(key, value, seed.headers)],
        outcomes: [{ records: [deadDecode("c_numeric_12_2")], row: absent }],
      };
    },
  },
  {
    name: "date-year-10000-and-infinity",
    weight: 3,
    expect: "applied exactly as PostgreSQL spells it: year 10000 dates and timestamps, infinity/-infinity in Debezium's own forms",
    make(g, topic, seed, id) {
      const { key, value, after } = cloneFor(seed, id);
      const variant = g.rng.pick(["date 10000", "ts 10000", "tstz 10000", "date infinity", "date -infinity", "ts infinity", "ts -infinity", "tstz infinity", "tstz -infinity"]);
      let col: string;
      let t: string;
      const tsCol = g.rng.pick(["c_ts0", "c_ts3", "c_ts6"]);
      const unit = timestampUnit(topic, tsCol);
      switch (variant) {
        case "date 10000":
          [col, t] = ["c_date", "10000-01-01"];
          after.set(col, new Num(String(daysOf("10000-01-01"))));
          break;
        case "ts 10000":
          [col, t] = [tsCol, "10000-01-01 00:00:01"];
          after.set(col, new Num(String((BigInt(daysOf("10000-01-01")) * 86_400n + 1n) * unit)));
          break;
        case "tstz 10000":
          [col, t] = ["c_tstz6", "10000-01-01 00:00:00.5+00"];
          after.set(col, "+10000-01-01T00:00:00.500000Z");
          break;
        case "date infinity":
        case "date -infinity":
          [col, t] = ["c_date", variant.slice(5)];
          after.set(col, new Num(variant.includes("-") ? "-2147472691" : "-2147472692"));
          break;
        case "ts infinity":
        case "ts -infinity": {
          [col, t] = [tsCol, variant.slice(3)];
          const ms = variant.includes("-") ? -9223372036832400n : 9223372036825200n;
          after.set(col, new Num(String((ms * unit) / 1000n)));
          break;
        }
        default:
          [col, t] = ["c_tstz6", variant.slice(5)];
          after.set(col, t);
      }
      return appliedAs(g, seed, variant, stamped(key, value, seed.headers), { [col]: { text: t } });
    },
  },
  {
    name: "date-out-of-range",
    weight: 3,
    expect: "dates/timestamps PostgreSQL cannot hold (before 4713 BC, beyond JavaScript's and PostgreSQL's range, impossible dates): dead letter naming the column or with SQLSTATE 22008/22007",
    make(g, topic, seed, id) {
      const { key, value, after } = cloneFor(seed, id);
      const [col, v] = g.rng.pick([
        ["c_date", new Num("-2500000")],
        ["c_date", new Num("1000000000")],
        ["c_date", new Num("-1000000000")],
        ["c_ts6", new Num("100000000000000000000")],
        ["c_ts3", new Num("-9223372036854775808")],
        ["c_tstz6", "+300000-01-01T00:00:00Z"],
        ["c_tstz0", "-5000-01-01T00:00:00Z"],
        ["c_tstz6", "2024-02-30T00:00:00Z"],
        ["c_time6", new Num("86400000001")],
      ] as Array<[string, J]>);
      after.set(col, v);
      return deadOnly(`${col} <- ${write(v)}`, stamped(key, value, seed.headers), dead({ codes: ["DECODE", "22008", "22007", "22009"], column: col }));
    },
  },
  {
    name: "duplicate-keys",
    weight: 4,
    expect: "dead letter at decode naming the duplicate (JSON.parse would keep the last silently)",
    make(g, topic, seed, id) {
      const { key, value, env, after } = cloneFor(seed, id);
      const variant = g.rng.pick(["after column", "after column, escaped spelling", "after unknown field", "envelope op", "source field", "message key", "schema key"]);
      let k: J | string = key;
      switch (variant) {
        case "after column":
          after.entries.push(["c_int", new Num("2")]);
          break;
        case "after column, escaped spelling":
          after.entries.push([new Raw('"c_\\u0069nt"'), new Num("3")]);
          break;
        case "after unknown field":
          after.entries.push(["zz", new Num("1")], ["zz", new Num("2")]);
          break;
        case "envelope op":
          env.entries.push(["op", "d"]);
          break;
        case "source field":
          env.obj("source").entries.push(["db", "other"]);
          break;
        case "message key":
          keyPayloadOf(key).entries.push(["id", new Num(String(id + 1))]);
          break;
        default:
          if (topic.form !== "schema") return null;
          (value as Obj).entries.unshift(["schema", new Obj()]);
      }
      return deadOnly(variant, stamped(k, value, seed.headers), deadDecode());
    },
  },
  {
    name: "missing-key-column",
    weight: 3,
    expect: "dead letter at decode: the message key lacks the key column (or is not a key at all)",
    make(g, topic, seed, id) {
      const { key, value } = cloneFor(seed, id);
      const kp = keyPayloadOf(key);
      const variant = g.rng.pick(["empty key object", "key field renamed ID", "key id null", "null key", "key is a JSON array", "key is a string", "key is null text", "key payload null"]);
      let k: J | string | null = key;
      switch (variant) {
        case "empty key object":
          kp.delete("id");
          break;
        case "key field renamed ID":
          kp.delete("id").set("ID", new Num(String(id)));
          break;
        case "key id null":
          kp.set("id", null);
          break;
        case "null key":
          k = null;
          break;
        case "key is a JSON array":
          k = `[${id}]`;
          break;
        case "key is a string":
          k = `"${id}"`;
          break;
        case "key is null text":
          k = "null";
          break;
        default:
          if (topic.form !== "schema") return null;
          (key as Obj).set("payload", null);
      }
      return deadOnly(variant, stamped(k, value, seed.headers), deadDecode());
    },
  },
  {
    name: "after-without-key-field",
    weight: 1,
    expect: "applied as the reference: the message key is authoritative for the key column",
    make(g, topic, seed, id) {
      const { key, value, after } = cloneFor(seed, id);
      after.delete("id");
      return appliedAs(g, seed, "after image without id", stamped(key, value, seed.headers));
    },
  },
  {
    name: "delete-shape",
    weight: 3,
    expect: "dead letter at decode, the stored row untouched: a delete with an after image, without a key, a tombstone without a key, an empty (non-null) value",
    make(g, topic, seed, id) {
      const pre = g.prelude(seed, id);
      const { key, value, env, after } = cloneFor(seed, id, "d");
      env.set("before", new Obj([["id", new Num(String(id))]]));
      const variant = g.rng.pick(["delete with after image", "delete without key", "tombstone without key", "empty value", "delete whose key lacks id", "tombstone whose key lacks id"]);
      let rec: PendingRecord;
      switch (variant) {
        case "delete with after image":
          env.set("after", after);
          rec = stamped(key, value, seed.headers);
          break;
        case "delete without key":
          env.set("after", null);
          rec = stamped(null, value, seed.headers);
          break;
        case "tombstone without key":
          rec = fixed({ key: null, value: null });
          break;
        case "empty value":
          rec = fixed({ key: write(key), value: "" });
          break;
        case "delete whose key lacks id":
          env.set("after", null);
          keyPayloadOf(key).delete("id");
          rec = stamped(key, value, seed.headers);
          break;
        default:
          keyPayloadOf(key).delete("id");
          rec = fixed({ key: write(key), value: null });
      }
      return { variant, records: [pre.record, rec], outcomes: [{ records: [APPLIED, deadDecode()], row: asRef(g, seed, pre.values) }] };
    },
  },
  {
    name: "delete-valid",
    weight: 1,
    expect: "control: a delete and its tombstone remove the stored row",
    make(g, topic, seed, id) {
      const pre = g.prelude(seed, id);
      return { variant: "delete + tombstone", records: [pre.record, ...goodDelete(seed, id)], outcomes: [{ records: [APPLIED, APPLIED, APPLIED], row: absent }] };
    },
  },
  {
    name: "truncated-record",
    weight: 4,
    expect: "dead letter at decode (invalid JSON, or INVALID_UTF8 when the cut splits a character)",
    make(g, topic, seed, id) {
      const { key, value } = cloneFor(seed, id);
      const cutKey = g.rng.chance(0.2);
      const r = stamped(key, value, seed.headers);
      return deadOnly(cutKey ? "key cut" : "value cut", {
        render(c) {
          const full = r.render(c);
          const b = Buffer.from((cutKey ? full.key : full.value) as string, "utf8");
          const cut = b.subarray(0, g.rng.range(1, b.length - 1));
          return cutKey ? { ...full, key: cut } : { ...full, value: cut };
        },
      }, dead({ stage: "decode", codes: ["DECODE", "INVALID_UTF8"] }));
    },
  },
  {
    name: "garbage",
    weight: 3,
    expect: "dead letter at decode: random bytes, JSON that is no envelope",
    make(g, topic, seed, id) {
      const { key } = cloneFor(seed, id);
      const variant = g.rng.pick(["random bytes", "random ASCII", "JSON number", "JSON string", "JSON array", "JSON null", "JSON true", "empty object", "BOM + envelope"]);
      let v: string | Uint8Array;
      switch (variant) {
        case "random bytes":
          v = Uint8Array.from({ length: g.rng.range(1, 3000) }, () => g.rng.int(256));
          break;
        case "random ASCII":
          v = Array.from({ length: g.rng.range(1, 3000) }, () => String.fromCharCode(32 + g.rng.int(95))).join("");
          break;
        case "JSON number":
          v = "12345678901234567890";
          break;
        case "JSON string":
          v = '"op"';
          break;
        case "JSON array":
          v = "[{\"op\":\"c\"}]";
          break;
        case "JSON null":
          v = "null";
          break;
        case "JSON true":
          v = "true";
          break;
        case "empty object":
          v = "{}";
          break;
        default: {
          const { value } = cloneFor(seed, id);
          const r = stamped(key, value, seed.headers, (t) => `\uFEFF${t}`);
          return deadOnly(variant, r, dead({ stage: "decode" }));
        }
      }
      return deadOnly(variant, fixed({ key: write(key), value: v }), dead({ stage: "decode", codes: ["DECODE", "INVALID_UTF8"] }));
    },
  },
  {
    name: "bad-op",
    weight: 3,
    expect: "dead letter at decode: unknown or missing op",
    make(g, topic, seed, id) {
      const { key, value, env } = cloneFor(seed, id);
      const [variant, op] = g.rng.pick([
        ['"x"', "x"],
        ['""', ""],
        ['"C"', "C"],
        ['"cu"', "cu"],
        ["1", new Num("1")],
        ["null", null],
        ["true", true],
        ["missing", undefined],
        ["object", new Obj([["op", "c"]])],
        ['"c " (trailing space)', "c "],
      ] as Array<[string, J | undefined]>);
      if (op === undefined) env.delete("op");
      else env.set("op", op);
      return deadOnly(`op ${variant}`, stamped(key, value, seed.headers, undefined, false, "c"), deadDecode());
    },
  },
  {
    name: "op-m",
    weight: 1,
    expect: "ignored: a logical-decoding message carries no row, even with an after image",
    make(g, topic, seed, id) {
      const { key, value } = cloneFor(seed, id, "m");
      return { variant: "op m with an after image", records: [stamped(key, value, seed.headers)], outcomes: [{ records: [{ kind: "ignored" }], row: absent }] };
    },
  },
  {
    name: "op-t-ignored",
    weight: 1,
    expect: "ignored (truncate = \"ignore\", the default): nothing is emptied",
    make(g, topic, seed, id) {
      const { value, env } = cloneFor(seed, id, "t");
      env.set("after", null);
      return { variant: "truncate event", records: [stamped(null, value, seed.headers)], outcomes: [{ records: [{ kind: "ignored" }], row: absent }] };
    },
  },
  {
    name: "after-not-object",
    weight: 2,
    expect: "dead letter at decode: a c/u/r whose after image is not a JSON object",
    make(g, topic, seed, id) {
      const { key, value, env } = cloneFor(seed, id);
      const [variant, v] = g.rng.pick([
        ["[]", []],
        ["[1,2]", [new Num("1"), new Num("2")]],
        ['["id"]', ["id"]],
        ['"row"', "row"],
        ["5", new Num("5")],
        ["true", true],
        ["null", null],
      ] as Array<[string, J]>);
      env.set("after", v);
      return deadOnly(`after ${variant}`, stamped(key, value, seed.headers), deadDecode());
    },
  },
  {
    name: "schema-payload-mismatch",
    weight: 3,
    expect: "payload not an envelope, or a value of another type than its schema: dead letter; a field the schema does not describe, or a schemaless record: read by the column's type, applied as the reference",
    make(g, topic, seed, id) {
      if (topic.form !== "schema") return null;
      const { key, value, env, after } = cloneFor(seed, id);
      const v = value as Obj;
      const variant = g.rng.pick(["payload array", "payload string", "payload null", "c_int not an int32", "field missing from the schema", "schemaless record on a schema topic", "schema not an object"]);
      const afterSchema = () => ((v.obj("schema").get("fields") as Obj[]).find((f) => f.get("field") === "after") as Obj).get("fields") as Obj[];
      switch (variant) {
        case "payload array":
          return deadOnly(variant, stamped(key, v, seed.headers, (t) => t.replace(/"payload":\{/, '"payload":[{').replace(/\}\}$/, "}]}")), deadDecode());
        case "payload string":
          v.set("payload", "{}");
          return deadOnly(variant, fixed({ key: write(key), value: write(v) }), deadDecode());
        case "payload null":
          v.set("payload", null);
          return deadOnly(variant, fixed({ key: write(key), value: write(v) }), deadDecode());
        case "c_int not an int32":
          after.set("c_int", "twelve");
          return deadOnly(variant, stamped(key, v, seed.headers), deadDecode("c_int"));
        case "field missing from the schema": {
          const fields = afterSchema();
          const col = g.rng.pick(["c_numeric_12_2", "c_ts3", "c_ts6", "c_time6", "c_date", "c_bytea", "c_numeric", "c_tstz6"]);
          fields.splice(fields.findIndex((f) => f.get("field") === col), 1);
          return appliedAs(g, seed, `${variant} (${col})`, stamped(key, v, seed.headers));
        }
        case "schemaless record on a schema topic": {
          const kp = keyPayloadOf(key);
          return appliedAs(g, seed, variant, stamped(kp, env, seed.headers));
        }
        default: {
          v.set("schema", "struct");
          return {
            variant,
            records: [stamped(key, v, seed.headers)],
            outcomes: [
              { records: [APPLIED], row: asRef(g, seed) },
              { records: [deadDecode()], row: absent },
            ],
          };
        }
      }
    },
  },
  {
    name: "deep-nesting",
    weight: 2,
    expect: "10,000-deep nesting: as the value, the key or an array column a dead letter; as jsonb text applied exactly; in an unknown field or a jsonb structure applied exactly or dead-lettered; never a crash or a stall",
    make(g, topic, seed, id) {
      const { key, value, after } = cloneFor(seed, id);
      const variant = g.rng.pick(["whole value", "whole key", "c_int_arr", "c_text_arr", "c_jsonb text", "c_jsonb structure", "unknown field", "source field"]);
      const deep = nested(10_000, "array");
      const deepObj = nested(10_000, "object");
      switch (variant) {
        case "whole value":
          return deadOnly(variant, fixed({ key: write(key), value: deep }), deadDecode());
        case "whole key": {
          const r = stamped(deep, value, seed.headers);
          return deadOnly(variant, r, deadDecode());
        }
        case "c_int_arr":
        case "c_text_arr":
          after.set(variant, new Raw(deep));
          return deadOnly(variant, stamped(key, value, seed.headers), dead({ codes: ["DECODE", "54000"], column: variant }));
        case "c_jsonb text":
          after.set("c_jsonb", deepObj);
          return appliedAs(g, seed, variant, stamped(key, value, seed.headers), { c_jsonb: { literal: deepObj } });
        case "c_jsonb structure":
          after.set("c_jsonb", new Raw(deepObj));
          return {
            variant,
            records: [stamped(key, value, seed.headers)],
            outcomes: [
              { records: [APPLIED], row: asRef(g, seed, { c_jsonb: { literal: deepObj } }) },
              { records: [deadDecode()], row: absent },
            ],
          };
        default: {
          if (variant === "unknown field") after.set("zz_deep", new Raw(deep));
          else envelopeOf(value).obj("source").set("zz_deep", new Raw(deepObj));
          return {
            variant,
            records: [stamped(key, value, seed.headers)],
            outcomes: [
              { records: [APPLIED], row: asRef(g, seed) },
              { records: [deadDecode()], row: absent },
            ],
          };
        }
      }
    },
  },
  {
    name: "huge-string",
    weight: 1,
    expect: "16 MiB: valid text applied exactly (md5, length); invalid UTF-8 a dead letter with value_size and value_sha256 (value capped); into varchar(10) a dead letter (22001)",
    make(g, topic, seed, id) {
      if (g.huge.left <= 0) return null;
      g.huge.left--;
      g.huge.made = (g.huge.made ?? 0) + 1;
      const n = g.huge.size;
      // ASCII, 2-, 3- and 4-byte characters and JSON escapes; built when rendered (held once at a time)
      const text = (wellFormed: boolean) => {
        const s = "0123456789abcdefé中😀\\\"".repeat(Math.ceil(n / 22)).slice(0, n);
        return wellFormed && s.isWellFormed() ? s : s.replace(/[\ud800-\udfff]/g, "x");
      };
      const picked = g.rng.pick(["valid c_text", "valid c_text", "invalid UTF-8 in c_text", "c_varchar"]);
      // the first is valid: the clean run of the RSS comparison carries it (test/fuzz/run.ts)
      const variant = g.huge.made === 1 ? "valid c_text" : picked;
      const build = (col: string, v: string, post?: (t: string) => Uint8Array) => () => {
        const { key, value, after } = cloneFor(seed, id);
        after.set(col, v);
        return stamped(key, value, seed.headers, post);
      };
      if (variant === "valid c_text") {
        const s = text(true);
        const expected = { md5: md5(s), length: [...s].length };
        return appliedAs(g, seed, `${variant} (${n} UTF-16 units)`, lazy(() => build("c_text", text(true))()), { c_text: expected });
      }
      if (variant === "c_varchar") return deadOnly(`${variant} (${n} chars)`, lazy(() => build("c_varchar", text(false))()), dead({ codes: ["DECODE", "22001"], column: "c_varchar" }));
      const out: RecordExpect = dead({ stage: "decode", codes: ["INVALID_UTF8"], bytes: "value" });
      const r = lazy(() =>
        build(`c_text`, `${text(false)}${MARK}`, (t) => {
          const bytes = spliceBytes(t, Uint8Array.of(0xff));
          Object.assign(out, { size: bytes.length, sha256: sha256(bytes) });
          return bytes;
        })(),
      );
      return { variant: `${variant} (${n} chars)`, records: [r], outcomes: [{ records: [out], row: absent }] };
    },
  },
  {
    name: "hostile-identifier",
    weight: 4,
    expect: "a field that is not a column is ignored (never SQL, never a bookkeeping column, never a prototype): applied as the reference; a key without its key column is a dead letter",
    make(g, topic, seed, id) {
      const { key, value, after } = cloneFor(seed, id);
      const variant = g.rng.pick(["after field", "after field", "__proto__ in after", "key extra field", "key field only hostile", "__proto__ in key"]);
      const name = g.rng.pick(HOSTILE_NAMES);
      switch (variant) {
        case "after field":
          after.set(name, g.rng.pick<J>(["x", new Num("0"), null, new Obj([["c_text", "evil"]])]));
          return appliedAs(g, seed, `after field ${JSON.stringify(name.slice(0, 40))}`, stamped(key, value, seed.headers));
        case "__proto__ in after": {
          // the colon inside c_varchar's text sends the record to the exact parser (src/decode/json.ts)
          after.delete("c_text").set("__proto__", new Obj([["c_text", "evil"], ["c_int", new Num("666")]]));
          after.set("c_varchar", 'a":b');
          after.delete("c_int");
          return appliedAs(g, seed, "__proto__ {c_text, c_int} in after (exact-parser path)", stamped(key, value, seed.headers), { c_text: null, c_int: null, c_varchar: { text: 'a":b' } });
        }
        case "key extra field":
          keyPayloadOf(key).set(name, new Num("1"));
          return appliedAs(g, seed, `key extra field ${JSON.stringify(name.slice(0, 40))}`, stamped(key, value, seed.headers));
        case "key field only hostile":
          keyPayloadOf(key).delete("id").set(name || "x", new Num(String(id)));
          return deadOnly(`key ${JSON.stringify(name.slice(0, 40))} only`, stamped(key, value, seed.headers), deadDecode());
        default: {
          // a key without an id, whose __proto__ holds one (exact-parser path via the colon in "note")
          keyPayloadOf(key).delete("id").set("__proto__", new Obj([["id", new Num(String(id))]])).set("note", 'a":b');
          return deadOnly("__proto__ {id} in the key (exact-parser path)", stamped(key, value, seed.headers), deadDecode());
        }
      }
    },
  },
  {
    name: "position-64bit",
    weight: 2,
    expect: "positions exact over 64 bits: stored exactly up to 2^64-1, newer-by-one wins at 2^53 and near 2^64, an older one is skipped",
    make(g, topic, seed, id) {
      const variant = g.rng.pick(["max", "stale near 2^64", "newer by one at 2^53", "newer by one near 2^64"]);
      const two64 = 2n ** 64n;
      const two53 = 2n ** 53n;
      // inserts (an update of a seed holding the TOAST placeholder text would be a partial row)
      const at = (commit: bigint, lsn: bigint, cInt: number) => {
        const { key, value, env, after } = cloneFor(seed, id, "c");
        after.set("c_int", new Num(String(cInt)));
        const source = env.obj("source");
        source.set("lsn", new Num(String(lsn))).set("snapshot", null).set("sequence", JSON.stringify([String(commit), String(lsn)]));
        return fixed({ key: write(key), value: write(value), headers: seed.headers }, true);
      };
      const row = (cInt: number, commit: bigint, lsn: bigint): RowExpect => ({ kind: "row", reference: g.reference(seed), values: { c_int: { text: String(cInt) } }, position: [String(commit), String(lsn)] });
      switch (variant) {
        case "max":
          return { variant, records: [at(two64 - 2n, two64 - 1n, 7)], outcomes: [{ records: [APPLIED], row: row(7, two64 - 2n, two64 - 1n) }] };
        case "stale near 2^64":
          return { variant, records: [at(two64 - 2n, two64 - 1n, 7), at(two64 - 2n, two64 - 2n, 8)], outcomes: [{ records: [APPLIED, APPLIED], row: row(7, two64 - 2n, two64 - 1n) }] };
        case "newer by one at 2^53":
          return { variant, records: [at(two53 + 1n, two53 + 1n, 7), at(two53 + 1n, two53 + 2n, 8)], outcomes: [{ records: [APPLIED, APPLIED], row: row(8, two53 + 1n, two53 + 2n) }] };
        default:
          return { variant, records: [at(two64 - 3n, two64 - 3n, 7), at(two64 - 3n, two64 - 2n, 8)], outcomes: [{ records: [APPLIED, APPLIED], row: row(8, two64 - 3n, two64 - 2n) }] };
      }
    },
  },
  {
    name: "key-alias",
    weight: 1,
    expect: "one row: a key spelled \"0<id>\" or <id>.0 is the same integer key, and the newer change wins (the two records in one batch)",
    make(g, topic, seed, id) {
      const pre = g.prelude(seed, id);
      const { key, value, after } = cloneFor(seed, id, "c");
      const spelled = g.rng.pick([`"0${id}"`, `"00${id}"`, `${id}.0`]);
      keyPayloadOf(key).set("id", new Raw(spelled));
      after.set("c_int", new Num("424242"));
      return {
        variant: `key id ${spelled}`,
        records: [{ ...pre.record, tight: true }, stamped(key, value, seed.headers, undefined, true)],
        outcomes: [{ records: [APPLIED, APPLIED], row: asRef(g, seed, { c_int: { text: "424242" } }) }],
      };
    },
  },
];


// ---------------------------------------------------------------------------------------------
// the stream

export interface Plan {
  topics: Topic[];
  /** reference rows (one per seed), good keys and mutants, in the order their first record is produced */
  references: GoodKey[];
  good: GoodKey[];
  mutants: Mutant[];
  /**
   * Every record in produce order, each with what it belongs to; rendered in this order with one
   * Clock (positions increase in produce order); `offset` is set once produced.
   */
  stream: StreamItem[];
  goodEvents: number;
}

export interface StreamItem {
  topic: number;
  partition: number;
  pending: PendingRecord;
  owner: { kind: "good"; key: GoodKey } | { kind: "mutant"; mutant: Mutant; index: number };
  offset?: number;
}

export interface PlanOptions {
  seed: number;
  mutants: number;
  goodEvents: number;
  partitions: number;
  /** how many 16 MiB values (and their size) */
  huge?: { count: number; size: number };
  /** only these classes (default: all) */
  classes?: string[];
}

/**
 * The whole run, deterministic from `seed`: one reference row per seed, then good keys (insert or
 * snapshot read, maybe updates, maybe a delete and its tombstone) and mutants interleaved at random,
 * each key's records in order, every record stamped with increasing source positions in produce order.
 */
export function plan(opts: PlanOptions): Plan {
  const rng = new Rng(opts.seed);
  const topics = loadTopics();
  let nextGood = 1000;
  let nextMutant = 10_000_000;
  const references: GoodKey[] = [];
  const refId = new Map<Seed, number>();
  let nextRef = 1;
  for (const t of topics)
    for (const s of t.seeds) {
      const id = nextRef++;
      refId.set(s, id);
      references.push({ topic: t.index, id, reference: id, final: seedValues(s), records: [goodUpsert(s, id, s.op)] });
    }
  const ctx: Ctx = {
    rng,
    topics,
    reference: (s) => refId.get(s)!,
    nextId: () => nextMutant++,
    prelude(seed, id) {
      const v = { c_int: randomInt32(rng), c_text: randomText(rng) };
      return { record: goodUpsert(seed, id, "c", v), values: { c_int: { text: String(v.c_int) }, c_text: { text: v.c_text } } };
    },
    huge: { left: opts.huge?.count ?? 0, size: opts.huge?.size ?? 16 * 1024 * 1024 },
  };

  const good: GoodKey[] = [];
  let goodEvents = references.length;
  while (goodEvents < opts.goodEvents) {
    const t = rng.pick(topics);
    const s = rng.pick(t.seeds);
    const id = nextGood++;
    let v = { c_int: randomInt32(rng), c_text: randomText(rng) };
    const records = [goodUpsert(s, id, rng.chance(0.2) ? "r" : "c", v)];
    // a snapshot read must come first: later changes are streamed
    for (let u = rng.chance(0.3) ? rng.range(1, 3) : 0; u > 0; u--) {
      v = { c_int: randomInt32(rng), c_text: randomText(rng) };
      records.push(goodUpsert(s, id, "u", v));
    }
    let final: GoodKey["final"] = { c_int: String(v.c_int), c_text: v.c_text };
    if (rng.chance(0.08)) {
      records.push(...goodDelete(s, id));
      final = null;
    }
    goodEvents += records.length;
    good.push({ topic: t.index, id, reference: refId.get(s)!, final, records });
  }

  const classes = CLASSES.filter((c) => !opts.classes || opts.classes.includes(c.name));
  const total = classes.reduce((a, c) => a + c.weight, 0);
  const mutants: Mutant[] = [];
  let attempts = 0;
  while (mutants.length < opts.mutants && attempts++ < opts.mutants * 50) {
    let r = rng.next() * total;
    const cls = classes.find((c) => (r -= c.weight) < 0) ?? classes[classes.length - 1]!;
    const t = rng.pick(topics);
    const s = rng.pick(t.seeds);
    const id = ctx.nextId();
    const m = cls.make(ctx, t, s, id);
    if (!m) continue;
    mutants.push({ cls: cls.name, topic: t.index, id, ...m });
  }

  // interleave: each script (good key or mutant) starts at a random time; its records follow at small gaps
  type Item = { at: number; seq: number; topic: number; id: number; rec: PendingRecord; owner: StreamItem["owner"] };
  const items: Item[] = [];
  let seq = 0;
  const span = goodEvents + opts.mutants;
  for (const k of references) items.push({ at: -1, seq: seq++, topic: k.topic, id: k.id, rec: k.records[0]!, owner: { kind: "good", key: k } });
  const place = (topic: number, id: number, recs: PendingRecord[], owner: (i: number) => Item["owner"]) => {
    let at = rng.next() * span;
    recs.forEach((rec, i) => {
      items.push({ at, seq: seq++, topic, id, rec, owner: owner(i) });
      at += rec.tight ? 1e-9 : rng.next() * 50;
    });
  };
  for (const k of good) place(k.topic, k.id, k.records, () => ({ kind: "good", key: k }));
  for (const m of mutants) place(m.topic, m.id, m.records, (index) => ({ kind: "mutant", mutant: m, index }));
  items.sort((a, b) => a.at - b.at || a.seq - b.seq);
  const stream = items.map((it) => ({ topic: it.topic, partition: it.id % opts.partitions, pending: it.rec, owner: it.owner }));
  return { topics, references, good, mutants, stream, goodEvents };
}
