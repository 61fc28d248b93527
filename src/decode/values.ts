// Debezium JSON values -> PostgreSQL text literals. A schemaless value is read by the target
// column's type and the connector's encoding modes ([debezium], named as in the connector config);
// a message with a schema follows the field's semantic name and parameters. Text is exact: no
// value goes through a lossy JS Date or float conversion on its way to the database, and what
// cannot be read exactly is a DecodeError naming the column (the event is dead-lettered).
import type { DebeziumModes } from "../config.ts";
import { DecodeError } from "../errors.ts";
import type { ColumnType, Encoding } from "../model.ts";
import { JsonNumber } from "./json.ts";

export const DEBEZIUM_DEFAULTS: Required<DebeziumModes> = {
  "time.precision.mode": "adaptive",
  "decimal.handling.mode": "precise",
  "binary.handling.mode": "bytes",
  "interval.handling.mode": "numeric",
  "unavailable.value.placeholder": "__debezium_unavailable_value",
  "money.fraction.digits": 2,
};

/** The encoding of a mapping: its own modes over [debezium] over Debezium's defaults. */
export function encodingOf(...layers: Array<DebeziumModes | undefined>): Encoding {
  const m = { ...DEBEZIUM_DEFAULTS };
  for (const l of layers) for (const [k, v] of Object.entries(l ?? {})) if (v !== undefined) (m as Record<string, unknown>)[k] = v;
  const placeholder = m["unavailable.value.placeholder"];
  return {
    timePrecision: m["time.precision.mode"],
    decimal: m["decimal.handling.mode"],
    binary: m["binary.handling.mode"],
    interval: m["interval.handling.mode"],
    placeholder,
    placeholderBase64: Buffer.from(placeholder).toString("base64"),
    moneyDigits: m["money.fraction.digits"],
  };
}

export const DEFAULT_ENCODING = encodingOf();

/** Marks a column whose value Debezium did not send (unchanged TOAST): keep the stored value. */
export const ABSENT: unique symbol = Symbol("absent");
export type Text = string | null | typeof ABSENT;

/** Semantic hints from a Kafka Connect schema field. */
export interface FieldSchema {
  type?: string;
  name?: string;
  parameters?: Record<string, string>;
  items?: FieldSchema;
}

const INT_TYPES = new Set(["int2", "int4", "int8", "oid"]);
const FLOAT_TYPES = new Set(["float4", "float8"]);
const TIMESTAMP_UNITS: Record<string, number> = {
  "io.debezium.time.Timestamp": 1e3,
  "org.apache.kafka.connect.data.Timestamp": 1e3,
  "io.debezium.time.MicroTimestamp": 1e6,
  "io.debezium.time.NanoTimestamp": 1e9,
};
const TIME_UNITS: Record<string, number> = {
  "io.debezium.time.Time": 1e3,
  "org.apache.kafka.connect.data.Time": 1e3,
  "io.debezium.time.MicroTime": 1e6,
  "io.debezium.time.NanoTime": 1e9,
};
// PostgreSQL's infinite dates are INT_MAX/INT_MIN days from 2000-01-01; Debezium shifts them to
// 1970 in 32 bits and they wrap around. Infinite timestamps arrive as pgjdbc's
// DATE_POSITIVE/NEGATIVE_INFINITY scaled to the unit. Neither is a date PostgreSQL can store.
const DATE_INFINITY = new Map<number, string>([
  [-2147472692, "infinity"],
  [-2147472691, "-infinity"],
]);
const TIMESTAMP_INFINITY_MS = new Map<bigint, string>([
  [9223372036825200n, "infinity"],
  [-9223372036832400n, "-infinity"],
]);

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

function dateFromDays(days: number): string {
  const inf = DATE_INFINITY.get(days);
  if (inf) return inf;
  const d = new Date(days * 86_400_000);
  if (Number.isNaN(d.getTime())) throw new RangeError(`${days} days is not a date`);
  const y = d.getUTCFullYear();
  return `${pad(y <= 0 ? 1 - y : y, 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}${y <= 0 ? " BC" : ""}`;
}

/** Epoch value in `unit` ticks per second -> 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC), exact to the microsecond. */
function timestampFromEpoch(v: number | bigint, unit: number): string {
  const big = BigInt(v);
  const perSec = BigInt(unit);
  const inf = TIMESTAMP_INFINITY_MS.get((big * 1000n) / perSec);
  if (inf && (big * 1000n) % perSec === 0n) return inf;
  let secs = big / perSec;
  let frac = big % perSec;
  if (frac < 0n) {
    frac += perSec;
    secs -= 1n;
  }
  const micros = Number((frac * 1_000_000n) / perSec);
  const d = new Date(Number(secs) * 1000);
  if (Number.isNaN(d.getTime())) throw new RangeError(`${v} is beyond any timestamp`);
  const y = d.getUTCFullYear();
  const date = `${pad(y <= 0 ? 1 - y : y, 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(micros, 6)}`;
  return `${date} ${time}${y <= 0 ? " BC" : ""}`;
}

function timeFromTicks(v: number | bigint, unit: number): string {
  const micros = (BigInt(v) * 1_000_000n) / BigInt(unit);
  if (micros < 0n || micros > 86_400_000_000n) throw new RangeError(`${v} is not a time of day`);
  const total = Number(micros);
  const us = total % 1_000_000;
  const s = Math.floor(total / 1_000_000);
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}.${pad(us, 6)}`;
}

/** ISO timestamps with astronomical years (Java: -0043 is 44 BC, +10000) -> PostgreSQL's era notation. */
function isoTimestamp(v: string): string {
  // the usual case, a four-digit year after the era's start: as it is
  const c = v.charCodeAt(0);
  if (c >= 49 && c <= 57 && v.charCodeAt(4) === 45) return v;
  const m = /^([+-]?)(\d{4,})(-.*)$/.exec(v);
  if (!m) return v;
  const year = Number(m[2]) * (m[1] === "-" ? -1 : 1);
  return year <= 0 ? `${pad(1 - year, 4)}${m[3]!.replace("T", " ")} BC` : `${m[2]}${m[3]}`;
}

/** Base64 big-endian two's-complement unscaled integer + scale -> decimal text. */
export function decimalFromBase64(b64: string, scale: number): string {
  const bytes = Buffer.from(b64, "base64");
  if (bytes.length === 0) return "0";
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  if (bytes[0]! & 0x80) n -= 1n << BigInt(bytes.length * 8);
  const neg = n < 0n;
  let digits = (neg ? -n : n).toString();
  if (scale > 0) {
    digits = digits.padStart(scale + 1, "0");
    digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  } else if (scale < 0) {
    digits += "0".repeat(-scale);
  }
  return neg ? `-${digits}` : digits;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64_URL = /^[A-Za-z0-9_-]*={0,2}$/;
const HEX = /^(?:[0-9a-fA-F]{2})*$/;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const SPECIAL_DECIMALS: Record<string, string> = { NaN: "NaN", NAN: "NaN", Infinity: "Infinity", "-Infinity": "-Infinity", POSITIVE_INFINITY: "Infinity", NEGATIVE_INFINITY: "-Infinity" };

const fail = (col: ColumnType, what: string): never => {
  throw new DecodeError(`column ${col.name}: ${what}`);
};
const show = (v: unknown): string => {
  if (typeof v === "string") return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
  if (v !== null && typeof v === "object" && !(v instanceof JsonNumber)) return Array.isArray(v) ? "an array" : "an object";
  return String(v instanceof JsonNumber ? v.text : v).slice(0, 60);
};

/** A decimal in exponent notation written out in plain digits, exactly (money does not read exponents). */
export function plainDecimal(text: string): string {
  const m = /^([+-]?)(\d*)\.?(\d*)[eE]([+-]?\d+)$/.exec(text);
  if (!m) return text;
  const [, sign, int, frac, e] = m;
  const digits = `${int}${frac}`;
  const point = int!.length + Number(e);
  if (point > 100_000 || point < -100_000) return text;
  const whole = point <= 0 ? `0.${"0".repeat(-point)}${digits}` : point >= digits.length ? digits + "0".repeat(point - digits.length) : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return `${sign === "-" ? "-" : ""}${whole.replace(/^0+(?=\d)/, "")}`;
}

function numericText(v: unknown, col: ColumnType, enc: Encoding, schema?: FieldSchema): string {
  const text = decimalText(v, col, enc, schema);
  if (col.type === "money") return plainDecimal(text);
  // PostgreSQL would round it to the column's scale: a silent change
  const rounded = roundedByScale(text, col);
  return rounded ? fail(col, rounded) : text;
}

/** Why a decimal's text would be rounded by the column's numeric(p,s) (PostgreSQL rounds silently), or undefined. */
export function roundedByScale(text: string, col: ColumnType): string | undefined {
  if (col.scale === null || lowestDigit(text) >= -col.scale) return undefined;
  return col.scale >= 0
    ? `${show(text)} has more digits after the point than the column's scale ${col.scale} keeps (it would be rounded)`
    : `${show(text)} is not a multiple of 1e${-col.scale}, which the column's scale ${col.scale} keeps (it would be rounded)`;
}

/** The power of ten of a decimal's last nonzero digit (1234.5: -1, 1200: 2; zero and text that is not a decimal: Infinity). */
function lowestDigit(text: string): number {
  const m = /^[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!m) return Infinity;
  const digits = `${m[1]}${m[2] ?? ""}`;
  const trimmed = digits.replace(/0+$/, "");
  if (!/[1-9]/.test(trimmed)) return Infinity;
  return digits.length - trimmed.length - (m[2]?.length ?? 0) + Number(m[3] ?? 0);
}

/** PostgreSQL's numeric keeps at most 16383 digits after the point; a scale beyond that is no value it sent. */
const MAX_NUMERIC_SCALE = 16383;
const numericScale = (col: ColumnType, scale: number): number =>
  Math.abs(scale) <= MAX_NUMERIC_SCALE ? scale : fail(col, `decimal scale ${scale} is outside what a PostgreSQL numeric holds (±${MAX_NUMERIC_SCALE})`);

function decimalText(v: unknown, col: ColumnType, enc: Encoding, schema?: FieldSchema): string {
  if (typeof v === "number") return Number.isFinite(v) ? String(v) : fail(col, `non-finite number ${v}`);
  if (typeof v === "bigint") return v.toString();
  if (v instanceof JsonNumber) return v.text;
  if (v && typeof v === "object" && "value" in v && "scale" in v) {
    // io.debezium.data.VariableScaleDecimal: numeric without a declared scale
    const o = v as { value: unknown; scale: unknown };
    if (typeof o.value !== "string" || !BASE64.test(o.value) || !Number.isInteger(o.scale)) return fail(col, `bad variable-scale decimal ${show(v)}`);
    return decimalFromBase64(o.value, numericScale(col, o.scale as number));
  }
  if (typeof v !== "string") return fail(col, `expected a number, got ${show(v)}`);
  const special = SPECIAL_DECIMALS[v];
  if (special) return special;
  const decimalSchema = schema?.name === "org.apache.kafka.connect.data.Decimal";
  if (decimalSchema || (!schema && enc.decimal === "precise")) {
    const scale = schema?.parameters?.scale !== undefined ? Number(schema.parameters.scale) : col.type === "money" ? enc.moneyDigits : col.scale;
    if (!BASE64.test(v)) return fail(col, `${show(v)} is not a base64 decimal (decimal.handling.mode = precise)`);
    if (scale === null || !Number.isInteger(scale)) return fail(col, `base64 decimal ${show(v)} needs a scale: the column has none and the message no schema (declare numeric(p,s), or send schemas)`);
    return decimalFromBase64(v, numericScale(col, scale));
  }
  return DECIMAL.test(v) ? v : fail(col, `${show(v)} is not a decimal number`);
}

function timeUnit(col: ColumnType, enc: Encoding, schema: FieldSchema | undefined, kind: "time" | "timestamp"): number {
  const named = schema?.name && (kind === "time" ? TIME_UNITS : TIMESTAMP_UNITS)[schema.name];
  if (named) return named;
  if (enc.timePrecision === "connect") return 1e3;
  if (kind === "time" && enc.timePrecision === "adaptive_time_microseconds") return 1e6;
  // adaptive: precision 0-3 in milliseconds, 4-6 (and unconstrained) in microseconds
  return col.precision !== null && col.precision <= 3 ? 1e3 : 1e6;
}

function bytesText(v: unknown, col: ColumnType, enc: Encoding, schema?: FieldSchema): string {
  if (typeof v !== "string") return fail(col, `expected bytes as text, got ${show(v)}`);
  const mode = schema?.type === "bytes" ? "bytes" : enc.binary;
  if (mode === "hex") return HEX.test(v) ? `\\x${v.toLowerCase()}` : fail(col, `${show(v)} is not hex (binary.handling.mode = hex)`);
  if (mode === "base64-url-safe") {
    if (!BASE64_URL.test(v)) fail(col, `${show(v)} is not url-safe base64 (binary.handling.mode = base64-url-safe)`);
    return `\\x${Buffer.from(v, "base64url").toString("hex")}`;
  }
  return BASE64.test(v) ? `\\x${Buffer.from(v, "base64").toString("hex")}` : fail(col, `${show(v)} is not base64 (binary.handling.mode = ${mode})`);
}

function scalarText(v: unknown, col: ColumnType, enc: Encoding, schema?: FieldSchema): string {
  const type = col.type;
  if (INT_TYPES.has(type)) {
    if (typeof v === "number" && Number.isInteger(v)) return String(v);
    if (typeof v === "bigint") return v.toString();
    // canonical digits: "042" and 42 must be the same key
    if (typeof v === "string" && /^[-+]?\d+$/.test(v)) return BigInt(v).toString();
    if (typeof v === "boolean") return v ? "1" : "0";
    return fail(col, `expected an integer, got ${show(v)}`);
  }
  if (FLOAT_TYPES.has(type)) {
    // String() of a double is its shortest exact form: PostgreSQL reads back the same double
    if (typeof v === "number" || typeof v === "bigint") return String(v);
    if (v instanceof JsonNumber) return v.text;
    if (typeof v === "string" && /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|NaN|-?Infinity)$/.test(v)) return v;
    return fail(col, `expected a number, got ${show(v)}`);
  }
  if (type === "numeric" || type === "money") return numericText(v, col, enc, schema);
  if (type === "bool") {
    if (typeof v === "boolean") return v ? "t" : "f";
    if (v === 0 || v === 1) return v ? "t" : "f";
    if (typeof v === "string" && /^(t|f|true|false)$/i.test(v)) return v;
    return fail(col, `expected a boolean, got ${show(v)}`);
  }
  try {
    if (type === "date") {
      if (typeof v === "number" && Number.isInteger(v)) return dateFromDays(v);
      if (typeof v === "string") return isoTimestamp(v);
      return fail(col, `expected days since 1970-01-01, got ${show(v)}`);
    }
    if (type === "timestamp" || type === "timestamptz") {
      if (typeof v === "string") return isoTimestamp(v);
      if ((typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint") {
        const ts = timestampFromEpoch(v, timeUnit(col, enc, schema, "timestamp"));
        if (type === "timestamp" || ts.endsWith("infinity")) return ts;
        return ts.endsWith(" BC") ? `${ts.slice(0, -3)}+00 BC` : `${ts}+00`;
      }
      return fail(col, `expected a timestamp, got ${show(v)}`);
    }
    if (type === "time" || type === "timetz") {
      if (typeof v === "string") return v;
      if ((typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint") return timeFromTicks(v, timeUnit(col, enc, schema, "time"));
      return fail(col, `expected a time, got ${show(v)}`);
    }
  } catch (e) {
    if (e instanceof RangeError) return fail(col, e.message);
    throw e;
  }
  if (type === "interval") {
    // numeric: microseconds (Debezium counts a month as 30.4375 days); string: ISO-8601, which PostgreSQL reads
    if (typeof v === "string") return /^-?P/.test(v) ? v : fail(col, `${show(v)} is not an ISO-8601 interval`);
    if ((typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint") return `${v} microseconds`;
    return fail(col, `expected an interval, got ${show(v)}`);
  }
  if (type === "bytea") return bytesText(v, col, enc, schema);
  if (typeof v === "string") return v;
  if (type === "json" || type === "jsonb") return jsonText(v);
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") return String(v);
  if (v instanceof JsonNumber) return v.text;
  return jsonText(v);
}

/** JSON text of a parsed document, numbers written back exactly as they were sent. */
export function jsonText(v: unknown): string {
  if (v === null || typeof v !== "object") {
    if (typeof v === "bigint") return v.toString();
    return JSON.stringify(v) ?? "null";
  }
  if (v instanceof JsonNumber) return v.text;
  if (Array.isArray(v)) return `[${v.map(jsonText).join(",")}]`;
  const parts: string[] = [];
  for (const k in v) parts.push(`${JSON.stringify(k)}:${jsonText((v as Record<string, unknown>)[k])}`);
  return `{${parts.join(",")}}`;
}

function arrayLiteral(items: unknown[], col: ColumnType, enc: Encoding, schema?: FieldSchema): string {
  const parts = items.map((x) => {
    if (x === null || x === undefined) return "NULL";
    if (Array.isArray(x)) return arrayLiteral(x, col, enc, schema);
    const t = scalarText(x, col, enc, schema);
    return `"${t.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
  });
  return `{${parts.join(",")}}`;
}

/** True for Debezium's unchanged-TOAST placeholder in the form it takes for this column. */
export function isUnavailable(v: unknown, col: ColumnType, enc: Encoding = DEFAULT_ENCODING): boolean {
  if (col.isArray) return Array.isArray(v) && v.length === 1 && v[0] === enc.placeholder;
  if (typeof v !== "string") return false;
  // bytea: base64 of the placeholder's bytes in bytes mode; hex mode sends its text as it is
  // (base64 modes send null: nothing tells it from a real NULL, and `check` warns)
  if (col.type === "bytea") return enc.binary === "bytes" ? v === enc.placeholderBase64 : v === enc.placeholder;
  return v === enc.placeholder;
}

/**
 * Converts one Debezium value for `col`; ABSENT for the unchanged-TOAST placeholder, unless
 * `literal` (a row image that cannot hold one, such as a snapshot row: the text is the value).
 */
export function toText(v: unknown, col: ColumnType, schema?: FieldSchema, enc: Encoding = DEFAULT_ENCODING, literal = false): Text {
  if (v === null || v === undefined) return null;
  if (!literal && isUnavailable(v, col, enc)) return ABSENT;
  if (col.isArray) {
    if (typeof v === "string") return v;
    if (!Array.isArray(v)) return fail(col, `expected an array, got ${show(v)}`);
    return arrayLiteral(v, col, enc, schema?.items);
  }
  return scalarText(v, col, enc, schema);
}
