// Schema changes on the analytics side. A decoder stops before the changes that follow a source
// schema it has not judged yet (pgoutput: a relation message; Debezium: a message schema that
// differs, or a schemaless field the table lacks) and hands over the source's columns with their
// types. Each is compared with the type last seen for it (`source_columns` in the state schema)
// and with the analytics column, under the mapping's `schema_changes` policy:
//
// - a column the table lacks: "add" adds it with the source's type (text when that type does not
//   exist in analytics: an enum, a domain); "ignore" leaves it out; "fail" stops the mapping;
// - a retyped column the analytics column still holds (a source narrowed, or the table was fixed
//   by hand): accepted;
// - one it does not hold, where a safe widening makes it (varchar(n) longer or text, smallint or
//   integer to bigint, numeric with more digits): "add" widens it; "ignore" leaves it (values that
//   do not fit become dead letters); "fail" stops the mapping;
// - anything else: "ignore" leaves it; "add" and "fail" stop the mapping.
//
// A type seen for the first time (a new installation, or the first schema after an upgrade) is
// not a change: only a widening the column needs is acted on; another difference is taken as
// chosen (numeric into double precision, an enum into text), and under "fail" so is a column the
// table lacks. `cdc-sink init` records the types of the tables it creates, so that changes made
// before their first streamed event are changes.
//
// Stopping a mapping: the new Target carries `stopped`; its decoder then neither applies nor
// checkpoints past that mapping's records (they are read again after a restart), and every other
// mapping goes on. Its refused type is not recorded as seen, so the next start judges it again
// against the table, which the operator may have fixed. A statement that fails for a reason a retry
// cannot fix (not the owner, a view depends on the column) stops the mapping too; a lost connection
// or a lock not granted within LOCK_TIMEOUT is retried by the pipeline.
//
// Every change met and what was done goes to `schema_log`, once: what was judged is stored as seen.
import type { Sql, TransactionSql } from "postgres";
import type { Mapping } from "../config.ts";
import { errorInfo, isConnectionError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { SchemaChange, TableInfo, Target } from "../model.ts";
import { judge, parseSqlType } from "../schema/types.ts";
import { introspectTable, quoteIdent } from "./schema.ts";
import { resolveTarget } from "./targets.ts";

/** How long a schema change waits for the table's lock (readers of the table hold it) before the pipeline retries it. */
const LOCK_TIMEOUT = "5s";

/** A column name "add" creates: a field name in a message schema is producer data. */
const PLAIN_NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

/** What identifies a mapping in the state tables: its topic, or source:schema.table. */
export const mappingId = (m: Mapping) => m.topic ?? `${m.source}:${m.source_table}`;

export interface SchemaLogEntry {
  tbl: string;
  mapping: string;
  col: string | null;
  change: "new_column" | "type_change" | "create_table" | "bookkeeping" | "key_index";
  action: "added" | "widened" | "accepted" | "ignored" | "refused" | "created";
  policy?: string;
  sourceType?: string | null;
  oldType?: string | null;
  newType?: string | null;
  statement?: string | null;
  detail?: string | null;
}

/** PostgreSQL text cannot hold NUL: a field name from an event may (shown as U+FFFD). */
const pgText = <T extends string | null | undefined>(s: T): T => (typeof s === "string" && s.includes("\u0000") ? (s.replaceAll("\u0000", "\uFFFD") as T) : s);

export async function writeSchemaLog(sql: Sql | TransactionSql, stateSchema: string, entries: SchemaLogEntry[]): Promise<void> {
  if (!entries.length) return;
  const rows = entries.map((e) => ({
    tbl: e.tbl,
    mapping: e.mapping,
    col: pgText(e.col),
    change: e.change,
    action: e.action,
    policy: e.policy ?? null,
    source_type: e.sourceType ?? null,
    old_type: e.oldType ?? null,
    new_type: e.newType ?? null,
    statement: pgText(e.statement ?? null),
    detail: pgText(e.detail ?? null),
  }));
  await (sql as Sql)`INSERT INTO ${sql(stateSchema)}.schema_log ${sql(rows)}`;
}

/** Errors the pipeline retries (the change is judged again): connection lost, lock not granted, deadlock, serialization. */
const retryable = (e: unknown) => isConnectionError(e) || /^(55P03|40P01|40001)$/.test((e as { code?: string })?.code ?? "");

export interface Evolver {
  (change: SchemaChange): Promise<Target>;
}

export function createEvolver(deps: { sql: Sql; stateSchema: string; log: Logger; metrics?: Metrics }): Evolver {
  const { sql, stateSchema, log, metrics } = deps;
  const state = quoteIdent(stateSchema);

  return async function evolve(change: SchemaChange): Promise<Target> {
    const t = change.target;
    const m = t.mapping;
    const policy = m.schema_changes ?? "ignore";
    const table = t.table.name;
    const id = mappingId(m);
    const logged: SchemaLogEntry[] = [];
    const refused: string[] = [];
    /** Judges every column in one transaction, under the table's lock; returns the table as it is then. */
    const judgeInTransaction = () =>
      sql.begin(async (tx) => {
        await tx`SELECT pg_advisory_xact_lock(hashtext(${`cdc_sink_evolve:${table}`}))`;
        await tx.unsafe(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
        let current = await introspectTable(tx as unknown as Sql, table);
        const seen = new Map((await tx.unsafe(`SELECT col, source_type FROM ${state}.source_columns WHERE tbl = $1 AND mapping = $2`, [table, id])).map((r) => [r.col as string, r.source_type as string | null]));
        const seenAs = (col: string) => seen.has(pgText(col));
        const fresh = seen.size === 0;
        const judged: Array<[string, string | null]> = [];
        const entry = (e: Omit<SchemaLogEntry, "tbl" | "mapping" | "policy">) => logged.push({ tbl: table, mapping: id, policy, ...e });
        /** Runs a DDL statement; false (the change is refused: the mapping stops) when it fails for a reason a retry cannot fix. */
        const ddl = async (statement: string, what: string, e: Omit<SchemaLogEntry, "tbl" | "mapping" | "policy" | "action">): Promise<boolean> => {
          try {
            await tx.savepoint((sp) => sp.unsafe(statement));
            return true;
          } catch (err) {
            if (retryable(err)) throw err;
            const reason = `${statement} failed: ${errorInfo(err).error}`;
            refused.push(`${what}: ${reason}`);
            entry({ ...e, action: "refused", statement, detail: reason });
            return false;
          }
        };
        for (const c of change.add) {
          const col = current.columns.get(c.column);
          const before = seen.get(pgText(c.column));
          if (c.sqlType === undefined) {
            // a schemaless field: no type to add it with
            if (seenAs(c.column) || col) continue;
            entry({ col: c.column, change: "new_column", action: "ignored", detail: "the events carry no schema (schemas.enable=false): no type to add it with" });
            judged.push([c.column, null]);
            continue;
          }
          if (before === c.sqlType) continue;
          const first = before === undefined;
          if (!col) {
            if (policy === "add" && !PLAIN_NAME.test(c.column)) {
              entry({ col: c.column, change: "new_column", action: "ignored", sourceType: c.sqlType, detail: "not a plain identifier (letters, digits, _ and $, at most 63): not added; add it by hand to copy it" });
              judged.push([c.column, c.sqlType]);
            } else if (policy === "add") {
              const type = await typeInAnalytics(tx, c.sqlType);
              const statement = `ALTER TABLE ${t.table.ident} ADD COLUMN IF NOT EXISTS ${quoteIdent(c.column)} ${type}`;
              if (!(await ddl(statement, `new column ${c.column} ${c.sqlType}`, { col: c.column, change: "new_column", sourceType: c.sqlType, newType: type }))) continue;
              entry({ col: c.column, change: "new_column", action: "added", sourceType: c.sqlType, newType: type, statement, detail: type === c.sqlType ? null : `type ${c.sqlType} does not exist in the analytics database: added as ${type}` });
              judged.push([c.column, c.sqlType]);
            } else if (policy === "ignore" || fresh) {
              // a mapping judged for the first time: a column its table lacks was left out on purpose
              entry({ col: c.column, change: "new_column", action: "ignored", sourceType: c.sqlType, detail: policy === "ignore" ? 'schema_changes = "ignore": not copied' : "not in the table when the mapping was first seen: taken as left out" });
              judged.push([c.column, c.sqlType]);
            } else {
              refused.push(`new source column ${c.source} (${c.sqlType}): the table has no column ${c.column} and schema_changes = "fail"`);
              entry({ col: c.column, change: "new_column", action: "refused", sourceType: c.sqlType, detail: 'schema_changes = "fail"' });
            }
            continue;
          }
          const j = judge(col.sqlType, c.sqlType, c.loose);
          const change = "type_change" as const;
          if (j.verdict === "fits") {
            if (!first) entry({ col: c.column, change, action: "accepted", sourceType: c.sqlType, oldType: col.sqlType, newType: col.sqlType, detail: `source type was ${before ?? "unknown"}; the analytics column holds the new one` });
            judged.push([c.column, c.sqlType]);
          } else if (j.verdict === "widen") {
            if (policy === "add") {
              const statement = `ALTER TABLE ${t.table.ident} ALTER COLUMN ${quoteIdent(c.column)} TYPE ${j.to}`;
              if (!(await ddl(statement, `column ${c.column} ${col.sqlType} -> ${j.to} (source ${c.sqlType})`, { col: c.column, change, sourceType: c.sqlType, oldType: col.sqlType, newType: j.to }))) continue;
              entry({ col: c.column, change, action: "widened", sourceType: c.sqlType, oldType: col.sqlType, newType: j.to, statement });
              judged.push([c.column, c.sqlType]);
            } else if (policy === "ignore") {
              entry({ col: c.column, change, action: "ignored", sourceType: c.sqlType, oldType: col.sqlType, detail: `schema_changes = "ignore": not widened to ${j.to}; values that do not fit become dead letters` });
              judged.push([c.column, c.sqlType]);
            } else {
              refused.push(`column ${c.column}: the source's ${c.sqlType} needs ${col.sqlType} widened to ${j.to}, and schema_changes = "fail"`);
              entry({ col: c.column, change, action: "refused", sourceType: c.sqlType, oldType: col.sqlType, detail: 'schema_changes = "fail"' });
            }
          } else if (first) {
            // not known to be a change: the analytics type was chosen so
            judged.push([c.column, c.sqlType]);
          } else if (policy === "ignore") {
            entry({ col: c.column, change, action: "ignored", sourceType: c.sqlType, oldType: col.sqlType, detail: `source type changed from ${before}; values that do not fit ${col.sqlType} become dead letters` });
            judged.push([c.column, c.sqlType]);
          } else {
            refused.push(`column ${c.column}: the source changed it from ${before} to ${c.sqlType}, which ${col.sqlType} does not hold and no safe widening makes it hold (ALTER it by hand and restart)`);
            entry({ col: c.column, change, action: "refused", sourceType: c.sqlType, oldType: col.sqlType });
          }
        }
        if (judged.length)
          await tx.unsafe(
            `INSERT INTO ${state}.source_columns (tbl, mapping, col, source_type) SELECT $1, $2, c, s FROM unnest($3::text[], $4::text[]) AS u(c, s)
             ON CONFLICT (tbl, mapping, col) DO UPDATE SET source_type = EXCLUDED.source_type, seen_at = now()`,
            [table, id, judged.map(([c]) => pgText(c)), judged.map(([, s]) => s)] as never[],
          );
        await writeSchemaLog(tx, stateSchema, logged);
        if (logged.some((e) => e.action === "added" || e.action === "widened")) current = await introspectTable(tx as unknown as Sql, table);
        return current;
      });
    let info: TableInfo;
    try {
      info = await judgeInTransaction();
    } catch (e) {
      if (retryable(e)) throw e;
      // never a loop of retries that cannot succeed: this mapping stops, the others go on
      const stopped = `mapping ${id} -> ${table} stopped: its source schema change could not be judged: ${errorInfo(e).error}`;
      metrics?.schemaChanges.inc({ table, action: "refused" });
      metrics?.mappingStopped.set({ table }, 1);
      log.error("mapping stopped: its events are held until cdc-sink is restarted", { table, mapping: id, ...errorInfo(e) });
      return { ...t, stopped };
    }
    for (const e of logged) {
      metrics?.schemaChanges.inc({ table, action: e.action });
      const ctx = { table, mapping: id, column: e.col, sourceType: e.sourceType, from: e.oldType, to: e.newType, detail: e.detail ?? undefined };
      if (e.action === "refused") continue;
      if (e.action === "ignored") log.warn("source schema change ignored", ctx);
      else log.info(`source schema change ${e.action}`, ctx);
    }
    const target = resolveTarget(m, info);
    if (!refused.length) return target;
    const stopped = `mapping ${id} -> ${table} stopped by a schema change (schema_changes = "${policy}"): ${refused.join("; ")}`;
    metrics?.mappingStopped.set({ table }, 1);
    log.error("mapping stopped: its events are held (not applied, source position not advanced) until the table is fixed and cdc-sink restarted; other mappings go on", { table, mapping: id, problems: refused });
    return { ...target, stopped };
  };
}

/** The type a new column gets: the source's when the analytics database has it, else text (arrays: text[]). */
async function typeInAnalytics(tx: TransactionSql, sqlType: string): Promise<string> {
  const [r] = await tx`SELECT to_regtype(${sqlType}) IS NOT NULL AS known`;
  if (r?.known) return sqlType;
  return parseSqlType(sqlType).array ? "text[]" : "text";
}

/** Adds the columns a source gained (kept for callers that have no state schema: no policy, no log). */
export async function evolveTable(sql: Sql, change: SchemaChange, log: Logger): Promise<Target> {
  const t = change.target;
  for (const c of change.add) {
    if (!c.sqlType || t.table.columns.has(c.column)) continue;
    await sql.unsafe(`ALTER TABLE ${t.table.ident} ADD COLUMN IF NOT EXISTS ${quoteIdent(c.column)} ${c.sqlType}`);
    log.info("source column added to analytics", { table: t.table.name, column: c.column, type: c.sqlType });
  }
  return resolveTarget(t.mapping, await introspectTable(sql, t.table.name));
}

