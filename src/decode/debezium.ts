// Debezium PostgreSQL change events (JSON, with or without schema) -> Change.
import { type Change, type Coord, Kind, type Target } from "../batch.ts";
import { parseJson } from "./json.ts";
import { ABSENT, DecodeError, type FieldSchema, toText } from "./types.ts";

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
  if (field) s = (schema.fields as Obj[] | undefined)?.find((f) => f.field === field);
  const fields = s?.fields as Array<FieldSchema & { field: string }> | undefined;
  if (!fields) return undefined;
  return new Map(fields.map((f) => [f.field, f]));
}

/** Debezium's usual `["<lastCommitLsn>","<lsn>"]`, parsed without JSON.parse (it is on every event). */
const SEQUENCE = /^\[(?:"(\d+)"|null),(?:"(\d+)"|null)\]$/;

const lsnNumber = (v: unknown): number | undefined => {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "string" && /^\d+$/.test(v)) return Number(v);
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
export function eventPosition(source: Obj | undefined, op: string, fallback: number): { posTx: number; pos: number } {
  const lsn = lsnNumber(source?.lsn);
  const snap = source?.snapshot;
  const isSnapshot = op === "r" || (typeof snap === "string" ? SNAPSHOT_VALUES.has(snap) : snap === true);
  if (isSnapshot) return { posTx: 0, pos: lsn ?? fallback };
  let seq: unknown[] | undefined;
  if (typeof source?.sequence === "string") {
    const m = SEQUENCE.exec(source.sequence);
    if (m) seq = [m[1], m[2]];
    else
      try {
        const p = JSON.parse(source.sequence);
        if (Array.isArray(p)) seq = p;
      } catch {
        /* ignored: fall back to lsn */
      }
  }
  const commit = lsnNumber(seq?.[0]);
  const rec = lsnNumber(seq?.[1]) ?? lsn;
  if (rec === undefined) return { posTx: fallback, pos: 0 };
  return { posTx: commit ?? rec, pos: rec };
}

/** Decodes the message key into text values of the target's key columns. */
function decodeKey(t: Target, keyText: string): { key: (string | null)[]; keyId: string } {
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
    const txt = toText(value, t.table.columns.get(target)!, fields?.get(field));
    if (txt === ABSENT || txt === null) throw new DecodeError(`message key field ${field} is null`);
    key[idx] = txt;
    found++;
  }
  if (found !== t.key.length) throw new DecodeError(`message key ${keyText.slice(0, 200)} lacks key column(s) ${t.key.join(", ")}`);
  return { key, keyId: JSON.stringify(key) };
}

/**
 * One Kafka record of a Debezium topic -> a change, or null when it carries no row (op `m`).
 * Throws DecodeError for anything that cannot be applied; the caller dead-letters it.
 */
export function decodeDebezium(t: Target, keyText: string | null, valueText: string | null, coord: Coord, unknown?: Set<string>): Change | null {
  if (valueText === null) {
    if (keyText === null) throw new DecodeError("record has neither key nor value");
    const k = decodeKey(t, keyText);
    return { target: t, kind: Kind.Delete, ...k, posTx: -1, pos: -1, sourceTs: 0, coord, raw: { key: keyText, value: null } };
  }
  const { payload, schema } = unwrap(parseJson(valueText));
  if (!payload || typeof payload !== "object" || Array.isArray(payload)) throw new DecodeError("value is not a Debezium envelope (JSON object)");
  const env = payload as Obj;
  const op = env.op;
  if (typeof op !== "string") throw new DecodeError("envelope has no op");
  const source = env.source as Obj | undefined;
  const sourceTs = typeof source?.ts_ms === "number" ? source.ts_ms : typeof env.ts_ms === "number" ? env.ts_ms : 0;
  const { posTx, pos } = eventPosition(source, op, coord.position);
  const raw = { key: keyText, value: valueText };
  switch (op) {
    case "m":
      return null;
    case "t":
      return { target: t, kind: Kind.Truncate, keyId: "", key: [], posTx, pos, sourceTs, coord, raw };
    case "d": {
      if (keyText === null) throw new DecodeError("delete event has no message key");
      return { target: t, kind: Kind.Delete, ...decodeKey(t, keyText), posTx, pos, sourceTs, coord, raw };
    }
    case "c":
    case "u":
    case "r": {
      if (keyText === null) throw new DecodeError(`${op} event has no message key`);
      const after = env.after;
      if (!after || typeof after !== "object") throw new DecodeError(`${op} event has no after image`);
      const k = decodeKey(t, keyText);
      const fields = fieldSchemas(schema, "after");
      const cols: string[] = [];
      const vals: (string | null)[] = [];
      const image = after as Obj;
      for (const field in image) {
        const value = image[field];
        const col = t.columns.get(field);
        if (col === undefined) {
          unknown?.add(field);
          continue;
        }
        if (t.keyIndex.has(col)) continue;
        const txt = toText(value, t.table.columns.get(col)!, fields?.get(field));
        if (txt === ABSENT) continue;
        cols.push(col);
        vals.push(txt);
      }
      // the message key is authoritative for key columns
      for (let i = 0; i < t.key.length; i++) {
        cols.push(t.key[i]!);
        vals.push(k.key[i]!);
      }
      return { target: t, kind: Kind.Upsert, ...k, cols, vals, posTx, pos, sourceTs, coord, raw };
    }
    default:
      throw new DecodeError(`unknown op ${JSON.stringify(op)}`);
  }
}
