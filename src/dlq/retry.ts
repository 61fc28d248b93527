// `cdc-sink dlq retry`: each dead letter applied again through the sink's position-guarded applier
// (sink/apply.ts), once its cause was fixed (a column added or widened, a constraint relaxed).
//
// - A Kafka record (the dead letter keeps its key and value) is decoded again with its mapping's
//   decoder and current table, at its own source position: if the analytics row (or the key's
//   tombstone) is newer, the guard keeps it, and the dead letter is resolved as superseded. A stale
//   dead letter never overwrites newer data.
// - A PostgreSQL-source change keeps only its key (pgoutput rows are not kept twice): the row is
//   read again from the source table and applied at the WAL position read before the read, as
//   `cdc-sink repair` positions its rows, so any change streamed later still wins; a row the source
//   no longer has is deleted. Kafka mappings with verify_source do the same for such dead letters.
//
// A retry rejected again leaves the dead letter pending with the new error. Records that cannot be
// retried from what the dead letter holds (not UTF-8, larger than the dead-letter cap) are named.
import { isUtf8 } from "node:buffer";
import type { Sql } from "postgres";
import { ChangeBatch } from "../batch.ts";
import type { Config, Mapping } from "../config.ts";
import { decodeDebezium } from "../decode/debezium.ts";
import { errorInfo, SchemaError } from "../errors.ts";
import { type Logger, silentLogger } from "../log.ts";
import { type Change, Kind, type Target } from "../model.ts";
import { readCatalog, type SourceTable } from "../provision/catalog.ts";
import { createApplier } from "../sink/apply.ts";
import { qualify, quoteIdent } from "../sink/schema.ts";
import { withCheckpointsHeld } from "../sink/state.ts";
import { loadTargets } from "../sink/targets.ts";
import { subjects, type VerifySubject } from "../verify/plan.ts";
import { walPosition } from "../verify/session.ts";
import { Connections } from "../verify/verify.ts";
import type { DeadLetterRow, DeadLetterStore, Filter } from "./store.ts";

export type RetryOutcome = "applied" | "superseded" | "already equal" | "nothing to apply" | "failed" | "not retryable";

export interface RetryResult {
  id: string;
  table: string | null;
  outcome: RetryOutcome;
  detail?: string;
}

type Attempt = { outcome: RetryOutcome; detail?: string; code?: string | null };
type Source = { subject: VerifySubject; sql: Sql; catalog: SourceTable };

const BIG = { maxEvents: Number.MAX_SAFE_INTEGER, maxBytes: Number.MAX_SAFE_INTEGER, maxLatencyMs: 0 };

/** The mapping a dead letter came from: its topic's (Kafka records), else its table's; a PostgreSQL-source one only its own source's, never another's writing the same table. */
export function mappingOf(config: Pick<Config, "mappings">, d: Pick<DeadLetterRow, "stream" | "part" | "target_table">): Mapping | undefined {
  if (d.stream.startsWith("kafka:")) {
    const topic = d.part.slice(0, d.part.lastIndexOf("/"));
    const m = config.mappings.find((x) => x.topic === topic);
    if (m) return m;
  }
  const byTable = config.mappings.filter((m) => m.table === d.target_table);
  // a snapshot row's dead letter is filed under "<source>#snapshot"
  const source = d.part.endsWith("#snapshot") ? d.part.slice(0, -"#snapshot".length) : d.part;
  if (d.stream.startsWith("pg:")) return byTable.find((m) => m.source === source);
  return byTable[0];
}

/** The record's text as it was consumed: its exact bytes when kept. */
function exactText(text: string | null, bytes: Buffer | null): string | null | undefined {
  if (!bytes) return text;
  return isUtf8(bytes) ? bytes.toString("utf8") : undefined;
}

export async function retryDeadLetters(config: Config, store: DeadLetterStore, filter: Filter, opts: { log?: Logger; onResult?: (r: RetryResult) => void } = {}): Promise<RetryResult[]> {
  const log = opts.log ?? silentLogger;
  const apply = createApplier({ sql: store.sql, stateSchema: config.postgres.state_schema, log, maxValueBytes: config.dead_letters.max_value_bytes });
  const targets = new Map<Mapping, Target | string>();
  const sources = new Map<Mapping, Source | string>();
  const conns = new Connections(config);
  const results: RetryResult[] = [];

  const targetOf = async (m: Mapping): Promise<Target | string> => {
    let t = targets.get(m);
    if (t === undefined) {
      try {
        t = (await loadTargets(store.sql, [m]))[0]!;
      } catch (e) {
        if (!(e instanceof SchemaError)) throw e;
        t = e.problems.join("; ");
      }
      targets.set(m, t);
    }
    return t;
  };

  /** The mapping's source table, read with the canonical session settings verify uses (UTC, ISO dates, hex bytea). */
  const sourceOf = async (m: Mapping): Promise<Source | string> => {
    let s = sources.get(m);
    if (s === undefined) {
      const subject = subjects(config).find((x) => x.mapping === m)!;
      if (subject.skip || !subject.source || !subject.sourceTable) s = `the dead letter keeps only the key, and the source row cannot be read again (${subject.skip ?? "no source table"})`;
      else
        try {
          const sql = conns.source(subject.source);
          const catalog = await readCatalog(sql, subject.sourceTable);
          s = catalog ? { subject, sql, catalog } : `source ${subject.source.name} has no table ${subject.sourceTable}`;
        } catch (e) {
          s = `source ${subject.source.name}: ${errorInfo(e).error}`;
        }
      sources.set(m, s);
    }
    return s;
  };

  /** A Kafka record decoded again and applied at its own position. */
  async function redecode(d: DeadLetterRow, m: Mapping): Promise<Attempt> {
    if (d.value_sha256 !== null)
      return { outcome: "not retryable", detail: `only the first KiB of the record is kept (it had ${d.value_size} bytes): the record is in ${d.part} at offset ${d.position}` };
    const key = exactText(d.key, d.key_bytes);
    const value = exactText(d.value, d.value_bytes);
    if (key === undefined || value === undefined) return { outcome: "not retryable", detail: "the record is not valid UTF-8: discard it, or have the producer send it again" };
    const t = await targetOf(m);
    if (typeof t === "string") return { outcome: "failed", detail: t };
    const coord = { stream: d.stream, part: d.part, position: BigInt(d.position) };
    let change;
    try {
      change = decodeDebezium(t, key, value, coord);
    } catch (e) {
      return { outcome: "failed", detail: errorInfo(e).error, code: errorInfo(e).code };
    }
    if (!change) return { outcome: "nothing to apply", detail: "the record carries no row" };
    const batch = new ChangeBatch(BIG);
    batch.add(change, Date.now());
    const before = await store.maxId();
    const r = await apply(batch);
    if (r.deadLetters) {
      const again = await store.takeNew(before, { stream: d.stream, part: d.part, position: d.position });
      return { outcome: "failed", detail: again[0]?.error ?? "rejected again", code: again[0]?.error_code ?? null };
    }
    if (batch.ignoredTruncates.size) return { outcome: "nothing to apply", detail: 'a truncate event, and the mapping says truncate = "ignore"' };
    return r.applied ? { outcome: "applied" } : { outcome: "superseded", detail: "the analytics row (or the key's delete) is newer: kept" };
  }

  /**
   * A key-only dead letter: the row read again from the source, each column as its own text (a
   * value the analytics column cannot hold is rejected again, never cut to fit), and applied at
   * (R, 0), R the source's WAL insert position read before the read (see verify/repair.ts: any
   * change committed later is streamed at a position above it and still wins; a row the source no
   * longer has is deleted there). The pipeline's checkpoint row of the source is held locked
   * meanwhile, so that its batches commit wholly before or after.
   */
  async function reread(d: DeadLetterRow, m: Mapping): Promise<Attempt> {
    let key: unknown;
    try {
      key = JSON.parse(d.key ?? "");
    } catch {
      key = undefined;
    }
    if (!Array.isArray(key)) return { outcome: "not retryable", detail: "the dead letter keeps neither the record nor a key to read the row again by" };
    const src = await sourceOf(m);
    if (typeof src === "string") return { outcome: "not retryable", detail: src };
    const t = await targetOf(m);
    if (typeof t === "string") return { outcome: "failed", detail: t };
    const { subject, sql: source, catalog } = src;
    const types = new Map(catalog.columns.map((c) => [c.name, c.sqlType]));
    const copied = [...t.columns].filter(([s]) => types.has(s));
    const keySources = t.key.map((k) => [...t.keyFields].find(([, target]) => target === k)?.[0] ?? k);
    const missing = keySources.filter((k) => !types.has(k));
    if (missing.length) return { outcome: "failed", detail: `source table ${subject.sourceTable} has no key column ${missing.join(", ")}` };
    const R = await walPosition(source);
    const found = await source.begin("ISOLATION LEVEL REPEATABLE READ READ ONLY", (tx) =>
      tx.unsafe(
        `SELECT ${copied.map(([s], i) => `${quoteIdent(s)}::text AS c${i}`).join(", ")} FROM ${qualify(subject.sourceTable!)} WHERE ${keySources.map((k, i) => `${quoteIdent(k)} = $${i + 1}::${types.get(k)!.replace(/\([^)]*\)/, "")}`).join(" AND ")}`,
        key as never[],
      ),
    );
    const keyText = JSON.stringify(key);
    const coord = { stream: d.stream, part: d.part, position: R };
    const base = { target: t, key: key as (string | null)[], keyText, commitLsn: R, lsn: 0n, sourceTs: 0, coord };
    const row = found[0];
    const change: Change = row ? { ...base, kind: Kind.Upsert, cols: copied.map(([, target]) => target), vals: copied.map((_, i) => row[`c${i}`] as string | null) } : { ...base, kind: Kind.Delete };
    const batch = new ChangeBatch(BIG);
    batch.add(change, Date.now());
    const before = await store.maxId();
    const r = await withCheckpointsHeld(store.sql, config.postgres.state_schema, subject.progress, () => apply(batch));
    if (r.deadLetters) {
      const again = await store.takeNew(before, { stream: d.stream, part: d.part, position: String(R) });
      return { outcome: "failed", detail: again[0]?.error ?? "rejected again", code: again[0]?.error_code ?? null };
    }
    if (!r.applied) return { outcome: "superseded", detail: "a newer change was applied meanwhile" };
    return { outcome: "applied", detail: row ? "source row read again and applied" : "the source no longer has the row: deleted" };
  }

  try {
    let after = 0n;
    for (;;) {
      const rows = await store.list(filter, 500, after);
      if (!rows.length) break;
      for (const d of rows) {
        after = BigInt(d.id);
        const m = mappingOf(config, d);
        let res: Attempt;
        if (!m) res = { outcome: "not retryable", detail: `no mapping in this configuration writes ${d.target_table ?? "(no table)"}${d.stream.startsWith("pg:") ? ` from source ${d.part.replace(/#snapshot$/, "")}` : ""}` };
        else if (d.stream.startsWith("kafka:") && m.topic) res = await redecode(d, m);
        else res = await reread(d, m);
        if (res.outcome === "failed") await store.failedAgain(BigInt(d.id), res.detail ?? "failed", res.code ?? d.error_code);
        else if (res.outcome !== "not retryable") await store.resolve({ ids: [BigInt(d.id)] }, "retry", res.outcome, res.detail ?? null);
        const out: RetryResult = { id: d.id, table: d.target_table, outcome: res.outcome, detail: res.detail };
        results.push(out);
        opts.onResult?.(out);
      }
    }
  } finally {
    await conns.close();
  }
  return results;
}
