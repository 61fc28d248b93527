// Debezium PostgreSQL change events (Kafka Connect JSON, with or without schema) -> changes.
import { createHash } from "node:crypto";
import type { ChangeBatch } from "../batch.ts";
import { DecodeError, errorInfo } from "../errors.ts";
import { failpoint } from "../failpoints.ts";
import type { MessageBatch } from "../kafka/index.ts";
import { type Change, type Coord, Kind, NO_POSITION, type Position, type Target } from "../model.ts";
import type { Decoder } from "../pipeline.ts";
import { parseJson } from "./json.ts";
import { ABSENT, type FieldSchema, toText } from "./values.ts";

type Obj = Record<string, unknown>;

const SNAPSHOT_VALUES = new Set(["true", "first", "last", "first_in_data_collection", "last_in_data_collection", "incremental"]);

/** Kafka Connect JSON with schemas.enable=true wraps the payload: {schema, payload}. */
function unwrap(doc: unknown): { payload: unknown; schema: Obj | null } {
  if (doc && typeof doc === "object" && !Array.isArray(doc) && "payload" in doc && "schema" in doc) {
    const d = doc as Obj;
    return { payload: d.payload, schema: (d.schema as Obj) ?? null };
  }
  return { payload: doc, schema: null };
}

function fieldSchemas(schema: Obj | null, field?: string): Map<string, FieldSchema> | undefined {
  if (!schema) return undefined;
  let s: Obj | undefined = schema;
  if (field) s = Array.isArray(schema.fields) ? (schema.fields as unknown[]).find((f): f is Obj => !!f && typeof f === "object" && (f as Obj).field === field) : undefined;
  const fields = s?.fields;
  if (!Array.isArray(fields)) return undefined;
  return new Map(fields.filter((f): f is FieldSchema & { field: string } => !!f && typeof f === "object" && typeof f.field === "string").map((f) => [f.field, f]));
}

const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/** Debezium's usual `["<lastCommitLsn>","<lsn>"]`, parsed without JSON.parse (it is on every event). */
const SEQUENCE = /^\[(?:"(\d+)"|null),(?:"(\d+)"|null)\]$/;

const positionOf = (v: unknown): Position | undefined => {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === "bigint") return v;
  if (typeof v === "string" && /^\d+$/.test(v)) return BigInt(v);
  return undefined;
};

/**
 * Source position of an event, ordered as the source committed it.
 * Streamed events: (commit position, record LSN). Debezium's `source.sequence` is
 * [lastCommitLsn, lsn]: lastCommitLsn is the commit LSN of the transaction before, constant within a
 * transaction and increasing from one transaction to the next, so the pair orders changes in commit
 * order. The record LSN alone does not: transactions interleave in the WAL.
 * Snapshot reads carry the snapshot's LSN, which does not order against streamed record LSNs of
 * transactions that began before the snapshot and committed after it; so snapshot rows rank below
 * every streamed change (commit position 0), and a later snapshot beats an earlier one.
 */
export function eventPosition(source: Obj | undefined, op: string, fallback: Position): { commitLsn: Position; lsn: Position } {
  const lsn = positionOf(source?.lsn);
  const snap = source?.snapshot;
  const isSnapshot = op === "r" || (typeof snap === "string" ? SNAPSHOT_VALUES.has(snap) : snap === true);
  if (isSnapshot) return { commitLsn: 0n, lsn: lsn ?? fallback };
  let seq: unknown[] | undefined;
  if (typeof source?.sequence === "string") {
    const m = SEQUENCE.exec(source.sequence);
    if (m) seq = [m[1], m[2]];
    else
      try {
        const p = parseJson(source.sequence);
        if (Array.isArray(p)) seq = p;
      } catch {
        /* ignored: fall back to lsn */
      }
  }
  const commit = positionOf(seq?.[0]);
  const rec = positionOf(seq?.[1]) ?? lsn;
  if (rec === undefined) return { commitLsn: fallback, lsn: 0n };
  return { commitLsn: commit ?? rec, lsn: rec };
}

/** Decodes the message key into text values of the target's key columns. */
function decodeKey(t: Target, keyText: string): { key: (string | null)[]; keyText: string } {
  const { payload, schema } = unwrap(parseJson(keyText));
  if (!payload || typeof payload !== "object" || Array.isArray(payload)) throw new DecodeError("message key is not a JSON object");
  const fields = fieldSchemas(schema);
  const p = payload as Obj;
  const key: (string | null)[] = new Array(t.key.length).fill(null);
  let found = 0;
  for (const field in p) {
    const value = p[field];
    const target = t.keyFields.get(field);
    if (target === undefined) continue;
    const idx = t.keyIndex.get(target)!;
    const txt = toText(value, t.table.columns.get(target)!, fields?.get(field), t.encoding);
    if (txt === ABSENT || txt === null) throw new DecodeError(`message key field ${field} is null`);
    key[idx] = txt;
    found++;
  }
  if (found !== t.key.length) throw new DecodeError(`message key ${keyText.slice(0, 200)} lacks key column(s) ${t.key.join(", ")}`);
  return { key, keyText: JSON.stringify(key) };
}

/** What else a decoder may ask of the record: whether Debezium marked it as the new row of a key change. */
export interface RecordContext {
  unknownFields?: Set<string>;
  keyChanged?: () => boolean;
}

/**
 * One Kafka record of a Debezium topic -> a change, or null when it carries no row (op `m`).
 * Throws DecodeError for anything that cannot be applied; the caller dead-letters it.
 *
 * The unchanged-TOAST placeholder stands for "not sent" only where the row image can leave a
 * value out: an update, or the insert that follows a primary-key change (header
 * `__debezium.oldkey`). In a snapshot read or a plain insert the same text is a real value.
 */
export function decodeDebezium(t: Target, keyText: string | null, valueText: string | null, coord: Coord, ctx: RecordContext = {}): Change | null {
  if (valueText === null) {
    if (keyText === null) throw new DecodeError("record has neither key nor value");
    const k = decodeKey(t, keyText);
    return { target: t, kind: Kind.Delete, ...k, commitLsn: NO_POSITION, lsn: NO_POSITION, sourceTs: 0, coord, raw: { key: keyText, value: null } };
  }
  const { payload, schema } = unwrap(parseJson(valueText));
  if (!payload || typeof payload !== "object" || Array.isArray(payload)) throw new DecodeError("value is not a Debezium envelope (JSON object)");
  const env = payload as Obj;
  const op = env.op;
  if (typeof op !== "string") throw new DecodeError("envelope has no op");
  const source = env.source as Obj | undefined;
  const sourceTs = typeof source?.ts_ms === "number" ? source.ts_ms : typeof env.ts_ms === "number" ? env.ts_ms : 0;
  const { commitLsn, lsn } = eventPosition(source, op, coord.position);
  const raw = { key: keyText, value: valueText };
  switch (op) {
    case "m":
      return null;
    case "t":
      return { target: t, kind: Kind.Truncate, keyText: "", key: [], commitLsn, lsn, sourceTs, coord, raw };
    case "d": {
      if (keyText === null) throw new DecodeError("delete event has no message key");
      if (env.after !== null && env.after !== undefined) throw new DecodeError("delete event carries an after image");
      return { target: t, kind: Kind.Delete, ...decodeKey(t, keyText), commitLsn, lsn, sourceTs, coord, raw };
    }
    case "c":
    case "u":
    case "r": {
      if (keyText === null) throw new DecodeError(`${op} event has no message key`);
      const after = env.after;
      if (!after || typeof after !== "object" || Array.isArray(after)) throw new DecodeError(`${op} event has no after image (an object)`);
      const k = decodeKey(t, keyText);
      const fields = fieldSchemas(schema, "after");
      const cols: string[] = [];
      const vals: (string | null)[] = [];
      const image = after as Obj;
      let partial = false;
      const surrogates = SURROGATE_ESCAPE.test(valueText);
      for (const field in image) {
        const value = image[field];
        const col = t.columns.get(field);
        if (col === undefined) {
          ctx.unknownFields?.add(field);
          continue;
        }
        if (t.keyIndex.has(col)) continue;
        const column = t.table.columns.get(col)!;
        let txt = toText(value, column, fields?.get(field), t.encoding, op === "r");
        if (txt === ABSENT && op === "c" && !ctx.keyChanged?.()) txt = toText(value, column, fields?.get(field), t.encoding, true);
        if (txt === ABSENT) {
          partial = true;
          continue;
        }
        // a lone surrogate (an escaped \ud800) has no UTF-8 form: PostgreSQL would get U+FFFD instead
        if (surrogates && txt !== null && !txt.isWellFormed()) throw new DecodeError(`column ${field}: a lone UTF-16 surrogate cannot be stored as UTF-8`);
        cols.push(col);
        vals.push(txt);
      }
      // the message key is authoritative for key columns
      for (let i = 0; i < t.key.length; i++) {
        cols.push(t.key[i]!);
        vals.push(k.key[i]!);
      }
      const change: Change = { target: t, kind: Kind.Upsert, ...k, cols, vals, commitLsn, lsn, sourceTs, coord, raw };
      if (partial) change.partial = true;
      return change;
    }
    default:
      throw new DecodeError(`unknown op ${JSON.stringify(op)}`);
  }
}

/** The record's bytes when its text cannot be stored exactly (a NUL); else null. */
function inexact(text: string | null, bytes: Uint8Array | null): Uint8Array | null {
  // the bytes are UTF-8 (checked before): only a NUL, which PostgreSQL text cannot hold, makes the text inexact
  return text !== null && bytes !== null && text.includes("\u0000") ? bytes : null;
}

/** The decode stage of the Kafka source: a consumed batch of Debezium records into the change batch. */
export function createDebeziumDecoder(deps: {
  /** checkpoint stream: kafka:<group> */
  stream: string;
  targets: Target[];
  onDeadLetter?: (info: { topic: string; partition: number; offset: number; error: string; code: string }) => void;
  onUnknownFields?: (fields: string[]) => void;
  onConsumed?: (topic: string, n: number) => void;
  /** the dead-letter cap ([dead_letters] max_value_bytes): a larger record is kept as its head, size and SHA-256 */
  maxValueBytes?: number;
}): Decoder<MessageBatch> {
  const maxValueBytes = deps.maxValueBytes ?? 1 << 20;
  // taken at decode, so that a large record's text is not held until its batch commits
  const large = (bytes: Buffer, text: string) => ({
    value: `${text.slice(0, 1024)}…`,
    valueBytes: Buffer.from(bytes.subarray(0, 1024)),
    valueSize: bytes.length,
    valueSha256: createHash("sha256").update(bytes).digest("hex"),
  });
  const byTopic = new Map<string, Target>();
  for (const t of deps.targets) byTopic.set(t.mapping.topic!, t);
  const unknownFields = new Set<string>();
  const reported = new Set<string>();
  return {
    decode(b: MessageBatch, batch: ChangeBatch, from: number, to: number) {
      const now = Date.now();
      const names = b.topicNames;
      const counts = new Array<number>(names.length).fill(0);
      for (let i = from; i < to; i++) {
        const ti = b.topicIndex(i);
        counts[ti]!++;
        const topic = names[ti]!;
        const partition = b.partition(i);
        const offset = b.offset(i);
        const coord: Coord = { stream: deps.stream, part: `${topic}/${partition}`, position: BigInt(offset) };
        batch.advance(coord, coord.position + 1n, b.size(i), now);
        const t = byTopic.get(topic);
        if (!t) continue;
        if (i === from + ((to - from) >> 1)) failpoint("mid-decode");
        // bytes that are not UTF-8 are checked as bytes: a large invalid record is never decoded whole
        if (!b.keyIsUtf8(i) || !b.valueIsUtf8(i)) {
          const bytes = (x: Buffer | null) => (x === null ? null : x.toString("utf8", 0, Math.min(x.length, 4096)));
          const error = "the record is not valid UTF-8 (its bytes are kept in the dead letter)";
          deps.onDeadLetter?.({ topic, partition, offset, error, code: "INVALID_UTF8" });
          batch.deadLetter({ coord, table: t.table.name, stage: "decode", key: bytes(b.key(i)), value: bytes(b.value(i)), keyBytes: b.key(i), valueBytes: b.value(i), error, code: "INVALID_UTF8" });
          continue;
        }
        const keyText = b.keyText(i);
        const valueText = b.valueText(i);
        try {
          const c = decodeDebezium(t, keyText, valueText, coord, { unknownFields, keyChanged: () => b.headers(i).some(([name]) => name === "__debezium.oldkey") });
          if (c && valueText !== null && b.valueLength(i) > maxValueBytes) c.raw = { key: keyText, ...large(b.value(i)!, valueText) };
          if (c) batch.add(c, now);
        } catch (e) {
          const { error } = errorInfo(e);
          // anything a decoder throws is about this record (a RangeError from absurd nesting too)
          const code = e instanceof DecodeError ? e.code : "DECODE";
          deps.onDeadLetter?.({ topic, partition, offset, error, code });
          batch.deadLetter({
            coord,
            table: t.table.name,
            stage: "decode",
            key: keyText,
            keyBytes: inexact(keyText, b.key(i)),
            ...(valueText !== null && b.valueLength(i) > maxValueBytes ? large(b.value(i)!, valueText) : { value: valueText, valueBytes: inexact(valueText, b.value(i)) }),
            error,
            code,
          });
        }
      }
      for (let ti = 0; ti < names.length; ti++) if (counts[ti]) deps.onConsumed?.(names[ti]!, counts[ti]!);
      if (unknownFields.size) {
        const fresh = [...unknownFields].filter((f) => !reported.has(f));
        for (const f of fresh) reported.add(f);
        if (fresh.length) deps.onUnknownFields?.(fresh);
        unknownFields.clear();
      }
      return undefined;
    },
    retarget(t: Target) {
      byTopic.set(t.mapping.topic!, t);
    },
  };
}
