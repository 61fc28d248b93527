// Debezium PostgreSQL change events (Kafka Connect JSON, with or without schema) -> changes.
//
// Schema changes: a message schema not judged yet for its topic (the first one, then any whose
// `after` fields differ) stops decoding before that record with the fields and the types they
// derive (schema/connect.ts), for the sink to judge (sink/evolve.ts). A schemaless record's field
// the table lacks cannot be typed: it is reported once per field and table (the sink records it
// as ignored) and not copied. A mapping the sink stopped is held: its records are not applied and
// their partition's checkpoint stays at the first of them, so a restart reads them again.
import { createHash } from "node:crypto";
import type { ChangeBatch } from "../batch.ts";
import { DecodeError, errorInfo } from "../errors.ts";
import { failpoint } from "../failpoints.ts";
import type { MessageBatch } from "../kafka/index.ts";
import { type Change, type Coord, Kind, NO_POSITION, partKey, type Position, type SchemaChange, type Target } from "../model.ts";
import type { Decoder, DecodeStop } from "../pipeline.ts";
import { type ConnectField, connectSqlType } from "../schema/connect.ts";
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
  /** fields of a schemaless row image that the target does not copy */
  unknownFields?: Set<string>;
  keyChanged?: () => boolean;
  /** called with the row image's field schemas when the record has a schema; may throw SchemaStop */
  checkSchema?: (fields: Map<string, FieldSchema> | undefined) => void;
}

/** Thrown by a RecordContext's checkSchema: the analytics table must be judged before this record. */
export class SchemaStop extends Error {
  constructor(readonly request: SchemaChange) {
    super("schema change");
  }
}

/** What a field schema says about its type, comparable between records. */
const fieldSig = (f: ConnectField): string =>
  !f || typeof f !== "object"
    ? String(f)
    : `${String(f.type)}|${String(f.name ?? "")}|${f.parameters ? JSON.stringify(f.parameters) : ""}|${f.items ? fieldSig(f.items) : ""}|${Array.isArray(f.fields) ? f.fields.map(fieldSig).join(",") : ""}`;

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
      const fields = fieldSchemas(schema, "after");
      if (schema) ctx.checkSchema?.(fields);
      const k = decodeKey(t, keyText);
      const cols: string[] = [];
      const vals: (string | null)[] = [];
      const image = after as Obj;
      let partial = false;
      const surrogates = SURROGATE_ESCAPE.test(valueText);
      for (const field in image) {
        const value = image[field];
        const col = t.columns.get(field);
        if (col === undefined) {
          if (!fields) ctx.unknownFields?.add(field);
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
  /** per topic: schemaless fields already reported */
  const reported = new Map<string, Set<string>>();
  /** per topic: the signature of each field schema judged, and the text of the last message schema found equal to them */
  const judged = new Map<string, Map<string, string>>();
  const schemaText = new Map<string, string>();
  /** stopped mappings' partitions (topic/partition): the first held offset */
  const held = new Map<string, bigint>();
  /** the record being decoded, for checkSchema (one object, reused) */
  const cur = { topic: "", t: undefined as unknown as Target, valueText: "" };

  /** The record's `{"schema":…` prefix, when the converter wrote the schema first (Kafka Connect's JsonConverter does). */
  const schemaPrefix = (text: string): string | undefined => {
    if (!text.startsWith('{"schema":')) return undefined;
    const end = text.indexOf(',"payload":');
    return end > 0 ? text.slice(0, end) : undefined;
  };

  /** Fields whose schema differs from what was judged for the topic: a request for the sink. */
  function checkSchema(fields: Map<string, FieldSchema> | undefined): void {
    const { topic, t, valueText } = cur;
    const known = schemaText.get(topic);
    if (known !== undefined && valueText.startsWith(known) && valueText.startsWith(',"payload":', known.length)) return;
    const prefix = schemaPrefix(valueText);
    if (prefix !== undefined) schemaText.set(topic, prefix);
    if (!fields) return;
    let sigs = judged.get(topic);
    if (!sigs) judged.set(topic, (sigs = new Map()));
    const add: SchemaChange["add"] = [];
    for (const [field, f] of fields) {
      if (t.mapping.columns && !t.mapping.columns.includes(field) && !t.keyFields.has(field)) continue;
      const sig = fieldSig(f as ConnectField);
      if (sigs.get(field) === sig) continue;
      sigs.set(field, sig);
      const type = connectSqlType(f as ConnectField);
      add.push({ source: field, column: t.mapping.rename[field] ?? field, sqlType: type?.sqlType, loose: type?.loose });
    }
    if (add.length) throw new SchemaStop({ target: t, add });
  }

  /** Schemaless fields of `topic` not reported yet: a request for the sink to record them as ignored. */
  function unknownRequest(topic: string, t: Target): SchemaChange | undefined {
    let seen = reported.get(topic);
    if (!seen) reported.set(topic, (seen = new Set()));
    const add: SchemaChange["add"] = [];
    for (const f of unknownFields) {
      if (seen.has(f)) continue;
      seen.add(f);
      if (!t.mapping.columns || t.mapping.columns.includes(f)) add.push({ source: f, column: t.mapping.rename[f] ?? f });
    }
    unknownFields.clear();
    return add.length ? { target: t, add } : undefined;
  }

  return {
    decode(b: MessageBatch, batch: ChangeBatch, from: number, to: number) {
      const now = Date.now();
      const names = b.topicNames;
      const counts = new Array<number>(names.length).fill(0);
      let stop: DecodeStop | undefined;
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
        if (t.stopped) {
          const h = held.get(coord.part);
          if (h === undefined || coord.position < h) held.set(coord.part, coord.position);
          continue;
        }
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
        if (valueText !== null) {
          cur.topic = topic;
          cur.t = t;
          cur.valueText = valueText;
        }
        try {
          const c = decodeDebezium(t, keyText, valueText, coord, { unknownFields, checkSchema, keyChanged: () => b.headers(i).some(([name]) => name === "__debezium.oldkey") });
          if (c && valueText !== null && b.valueLength(i) > maxValueBytes) c.raw = { key: keyText, ...large(b.value(i)!, valueText) };
          if (c) batch.add(c, now);
        } catch (e) {
          if (e instanceof SchemaStop) {
            // decoded again from here once the sink has judged the schema: counted then
            counts[ti]!--;
            stop = { at: i, request: e.request };
            break;
          }
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
        if (unknownFields.size) {
          const request = unknownRequest(topic, t);
          if (request) {
            stop = { at: i + 1, request };
            break;
          }
        }
      }
      cur.valueText = "";
      for (let ti = 0; ti < names.length; ti++) if (counts[ti]) deps.onConsumed?.(names[ti]!, counts[ti]!);
      for (const [part, position] of held) {
        const p = batch.parts.get(partKey({ stream: deps.stream, part }));
        if (p && p.next > position) p.next = position;
      }
      return stop;
    },
    retarget(t: Target) {
      byTopic.set(t.mapping.topic!, t);
    },
  };
}
