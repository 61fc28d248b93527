// Debezium JSON values -> PostgreSQL text literals, chosen by the target column's type and, when the
// message carries a schema, by the field's semantic name. Text is exact: no value goes through a
// lossy JS Date or float conversion on its way to the database.

import { DecodeError } from "../errors.ts";
import type { ColumnType } from "../model.ts";

export const UNAVAILABLE = "__debezium_unavailable_value";
const UNAVAILABLE_B64 = Buffer.from(UNAVAILABLE).toString("base64");

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

export function isUnavailable(v: unknown): boolean {
  if (v === UNAVAILABLE || v === UNAVAILABLE_B64) return true;
  return Array.isArray(v) && v.length === 1 && (v[0] === UNAVAILABLE || v[0] === UNAVAILABLE_B64);
}

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

function dateFromDays(days: number): string {
  const d = new Date(days * 86_400_000);
  const y = d.getUTCFullYear();
  const ys = y <= 0 ? `${pad(1 - y, 4)}` : pad(y, 4);
  return `${ys}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}${y <= 0 ? " BC" : ""}`;
}

/** Epoch value in `unit` ticks per second -> 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC), exact to the microsecond. */
function timestampFromEpoch(v: number | bigint, unit: number): string {
  const big = BigInt(v);
  const perSec = BigInt(unit);
  let secs = big / perSec;
  let frac = big % perSec;
  if (frac < 0n) {
    frac += perSec;
    secs -= 1n;
  }
  const micros = Number((frac * 1_000_000n) / perSec);
  const d = new Date(Number(secs) * 1000);
  const y = d.getUTCFullYear();
  const date = `${pad(Math.abs(y <= 0 ? 1 - y : y), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(micros, 6)}`;
  return `${date} ${time}${y <= 0 ? " BC" : ""}`;
}

function timeFromTicks(v: number | bigint, unit: number): string {
  const micros = (BigInt(v) * 1_000_000n) / BigInt(unit);
  const total = Number(micros);
  const us = total % 1_000_000;
  const s = Math.floor(total / 1_000_000);
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}.${pad(us, 6)}`;
}

/** Without a schema a timestamp is micro- or milliseconds: magnitude tells (1e14 µs ≈ 1973, 1e14 ms ≈ year 5138). */
function guessTimestampUnit(v: number | bigint): number {
  const a = typeof v === "bigint" ? (v < 0n ? -v : v) : Math.abs(v);
  if (a >= 1e17) return 1e9;
  if (a >= 1e14) return 1e6;
  return 1e3;
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

function numericText(v: unknown, col: ColumnType, schema?: FieldSchema): string {
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new DecodeError(`column ${col.name}: non-finite number ${v}`);
    return String(v);
  }
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "string") {
    if (v === "NaN" || v === "Infinity" || v === "-Infinity") return v;
    if (/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(v)) return v;
    const scale = schema?.parameters?.scale !== undefined ? Number(schema.parameters.scale) : col.scale;
    if (BASE64.test(v) && scale !== null && scale !== undefined) return decimalFromBase64(v, scale);
    throw new DecodeError(`column ${col.name}: cannot read ${JSON.stringify(v)} as numeric (column scale unknown)`);
  }
  if (v && typeof v === "object" && "value" in v && "scale" in v) {
    const o = v as { value: string; scale: number };
    return decimalFromBase64(o.value, Number(o.scale));
  }
  throw new DecodeError(`column ${col.name}: expected a number, got ${typeof v}`);
}

function scalarText(v: unknown, col: ColumnType, type: string, schema?: FieldSchema): string {
  const sname = schema?.name;
  if (INT_TYPES.has(type)) {
    if (typeof v === "number" && Number.isInteger(v)) return String(v);
    if (typeof v === "bigint") return v.toString();
    if (typeof v === "string" && /^-?\d+$/.test(v)) return v;
    if (typeof v === "boolean") return v ? "1" : "0";
    throw new DecodeError(`column ${col.name}: expected an integer, got ${JSON.stringify(v)}`);
  }
  if (FLOAT_TYPES.has(type)) {
    if (typeof v === "number" || typeof v === "bigint") return String(v);
    if (typeof v === "string" && /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|NaN|-?Infinity)$/.test(v)) return v;
    throw new DecodeError(`column ${col.name}: expected a number, got ${JSON.stringify(v)}`);
  }
  if (type === "numeric" || type === "money") return numericText(v, col, schema);
  if (type === "bool") {
    if (typeof v === "boolean") return v ? "t" : "f";
    if (v === 0 || v === 1) return v ? "t" : "f";
    if (typeof v === "string" && /^(t|f|true|false)$/i.test(v)) return v;
    throw new DecodeError(`column ${col.name}: expected a boolean, got ${JSON.stringify(v)}`);
  }
  if (type === "date") {
    if (typeof v === "number" && Number.isInteger(v)) return dateFromDays(v);
    if (typeof v === "string") return v;
    throw new DecodeError(`column ${col.name}: expected days since epoch, got ${JSON.stringify(v)}`);
  }
  if (type === "timestamp" || type === "timestamptz") {
    if (typeof v === "string") return v;
    if (typeof v === "number" || typeof v === "bigint") {
      const unit = (sname && TIMESTAMP_UNITS[sname]) || guessTimestampUnit(v);
      return timestampFromEpoch(v, unit) + (type === "timestamptz" ? "+00" : "");
    }
    throw new DecodeError(`column ${col.name}: expected a timestamp, got ${JSON.stringify(v)}`);
  }
  if (type === "time" || type === "timetz") {
    if (typeof v === "string") return v;
    if (typeof v === "number" || typeof v === "bigint") return timeFromTicks(v, (sname && TIME_UNITS[sname]) || 1e6);
    throw new DecodeError(`column ${col.name}: expected a time, got ${JSON.stringify(v)}`);
  }
  if (type === "interval") {
    if (typeof v === "string") return v;
    if (typeof v === "number" || typeof v === "bigint") return `${v} microseconds`;
    throw new DecodeError(`column ${col.name}: expected an interval, got ${JSON.stringify(v)}`);
  }
  if (type === "bytea") {
    if (typeof v !== "string") throw new DecodeError(`column ${col.name}: expected base64 bytes, got ${typeof v}`);
    if (!BASE64.test(v)) throw new DecodeError(`column ${col.name}: bytes are not base64`);
    return "\\x" + Buffer.from(v, "base64").toString("hex");
  }
  if (type === "json" || type === "jsonb") {
    if (typeof v === "string") {
      return v;
    }
    return jsonText(v);
  }
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") return String(v);
  return JSON.stringify(v);
}

const BIG = "\u0000bigint:";
/** JSON text of a parsed document, writing bigints back as exact integers. */
function jsonText(v: unknown): string {
  const s = JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? BIG + x.toString() : x));
  return s.includes(BIG.slice(1)) ? s.replace(/"\\u0000bigint:(-?\d+)"/g, "$1") : s;
}

function arrayLiteral(items: unknown[], col: ColumnType, schema?: FieldSchema): string {
  const parts = items.map((x) => {
    if (x === null || x === undefined) return "NULL";
    if (Array.isArray(x)) return arrayLiteral(x, col, schema);
    const t = scalarText(x, col, col.type, schema);
    return `"${t.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
  });
  return `{${parts.join(",")}}`;
}

/** Converts one Debezium value for `col`; ABSENT for the unchanged-TOAST placeholder. */
export function toText(v: unknown, col: ColumnType, schema?: FieldSchema): Text {
  if (v === null || v === undefined) return null;
  if (isUnavailable(v)) return ABSENT;
  if (col.isArray) {
    if (typeof v === "string") return v;
    if (!Array.isArray(v)) throw new DecodeError(`column ${col.name}: expected an array, got ${typeof v}`);
    return arrayLiteral(v, col, schema?.items);
  }
  return scalarText(v, col, col.type, schema);
}
