// Which mappings can be verified, against which source table, comparing which columns: a mapping
// resolved against its analytics table (sink/targets.ts) and the source table's catalog.
import type { Sql } from "postgres";
import type { Config, Mapping, PgSourceConfig } from "../config.ts";
import { SchemaError } from "../errors.ts";
import type { Target } from "../model.ts";
import { textArray } from "../sink/pgarray.ts";
import { qualify, quoteIdent } from "../sink/schema.ts";
import { loadTargets } from "../sink/targets.ts";
import { pgStream, slotName } from "../sources/postgres/setup.ts";
import type { ColumnPlan, KeyPlan, TablePlan } from "./sql.ts";

/** A mapping and where its source rows are read. */
export interface VerifySubject {
  mapping: Mapping;
  /** the analytics table */
  table: string;
  mode: "postgres" | "kafka";
  /** the [[postgres_sources]] entry read; undefined: the mapping cannot be verified (see `skip`) */
  source?: PgSourceConfig;
  /** the source table, schema.table */
  sourceTable?: string;
  /** why the mapping is not verified */
  skip?: string;
  /** PostgreSQL mappings: the checkpoint stream and part that say how far the sink applied the source, and its slot */
  progress?: { stream: string; part: string; slot: string };
}

/** Kafka mappings read verify_table, by default the topic's last two parts (…public.orders). */
export const defaultVerifyTable = (topic: string) => topic.split(".").slice(-2).join(".");

/** Every mapping (or those matching `only`: analytics table, source table or topic) with its source. */
export function subjects(config: Config, only?: string): VerifySubject[] {
  const byName = new Map(config.postgres_sources.map((s) => [s.name, s]));
  const out: VerifySubject[] = [];
  for (const m of config.mappings) {
    if (only !== undefined && ![m.table, m.source_table, m.topic, m.verify_table].includes(only)) continue;
    if (config.source.kind === "postgres") {
      const source = byName.get(m.source!);
      out.push({ mapping: m, table: m.table, mode: "postgres", source, sourceTable: m.source_table, progress: source && { stream: pgStream(source), part: source.name, slot: slotName(source) } });
      continue;
    }
    const source = m.verify_source === undefined ? undefined : byName.get(m.verify_source);
    const sourceTable = m.verify_table ?? (m.topic ? defaultVerifyTable(m.topic) : undefined);
    out.push({ mapping: m, table: m.table, mode: "kafka", source, sourceTable, skip: source ? undefined : "no verify_source: the source table cannot be read" });
  }
  return out;
}

interface SourceColumn {
  name: string;
  type: string;
  collation: string;
}

/** A column's effective collation, comparable across databases (provider and locale; "" when not collatable). */
const COLLATION = `CASE WHEN a.attcollation = 0 THEN ''
  WHEN co.collname = 'default' THEN 'db:' || coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') || ':' || coalesce(to_jsonb(d) ->> 'daticulocale', to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'datcollate', '')
  ELSE co.collprovider::text || ':' || coalesce(to_jsonb(co) ->> 'colliculocale', to_jsonb(co) ->> 'colllocale', to_jsonb(co) ->> 'collcollate', co.collname) END`;

async function columnsOf(sql: Sql, table: string): Promise<Map<string, SourceColumn> | undefined> {
  const [rel] = await sql.unsafe(`SELECT to_regclass($1)::oid::text AS oid`, [qualify(table)]);
  if (!rel?.oid) return undefined;
  const rows = await sql.unsafe(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, ${COLLATION} AS collation
     FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation
     CROSS JOIN pg_database d
     WHERE d.datname = current_database() AND a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [rel.oid],
  );
  return new Map(rows.map((r) => [r.name as string, r as unknown as SourceColumn]));
}

/** Do both databases compute hashtextextended alike (same algorithm, same byte order)? */
async function sameFastHash(src: Sql, analytics: Sql): Promise<boolean> {
  const q = `SELECT hashtextextended('cdc-sink verify ' COLLATE "C", 0)::text AS h`;
  try {
    const [[a], [b]] = await Promise.all([src.unsafe(q), analytics.unsafe(q)]);
    return a!.h === b!.h;
  } catch {
    return false;
  }
}

/** The analytics table of one mapping, resolved as the sink resolves it. */
export async function targetOf(analytics: Sql, m: Mapping): Promise<Target> {
  const [t] = await loadTargets(analytics, [m]);
  return t!;
}

/**
 * The comparison plan: the mapping's columns that exist at the source (the rest are listed in
 * `notCompared`), key columns with their ordering, the hash to use. Throws SchemaError when the
 * source table or a key column is missing.
 */
export async function planTable(target: Target, sourceTable: string, src: Sql, analytics: Sql): Promise<{ plan: TablePlan; notCompared: string[] }> {
  const source = await columnsOf(src, sourceTable);
  if (!source) throw new SchemaError([`source table ${sourceTable} does not exist (or is not visible to the source role)`]);
  const analyticsColumns = await columnsOf(analytics, target.table.name);
  const sourceOf = new Map<string, string>();
  for (const [s, t] of target.columns) sourceOf.set(t, s);
  const wanted = [...target.table.columns.values()].filter((c) => sourceOf.has(c.name) || target.key.includes(c.name));
  const types = [...new Set(wanted.map((c) => c.sqlType))];
  const known = new Set(
    (await src.unsafe(`SELECT t AS type FROM unnest($1::text[]) AS t WHERE to_regtype(t) IS NOT NULL`, [textArray(types.length, (i) => types[i]!)])).map((r) => r.type as string),
  );
  const columns: ColumnPlan[] = [];
  const notCompared: string[] = [];
  const problems: string[] = [];
  for (const c of wanted) {
    const s = source.get(sourceOf.get(c.name) ?? c.name);
    if (!s) {
      if (target.key.includes(c.name)) problems.push(`source table ${sourceTable} has no column ${sourceOf.get(c.name) ?? c.name} (key column ${c.name} of ${target.table.name})`);
      else notCompared.push(c.name);
      continue;
    }
    columns.push({ source: s.name, target: c.name, sqlType: c.sqlType, castType: c.castType, sourceType: s.type, money: c.type === "money", viaText: !known.has(c.sqlType) });
  }
  if (problems.length) throw new SchemaError(problems);
  const key: KeyPlan[] = target.key.map((k) => {
    const c = columns.find((x) => x.target === k)!;
    const a = analyticsColumns?.get(k)?.collation ?? "";
    const s = source.get(c.source)!.collation;
    return { ...c, collateC: a !== s && (a !== "" || s !== "") };
  });
  const plan: TablePlan = {
    table: target.table.name,
    sourceIdent: qualify(sourceTable),
    analyticsIdent: target.table.ident,
    key,
    columns,
    softDelete: target.mapping.delete_mode === "soft" ? quoteIdent(target.mapping.soft_delete_column) : null,
    fastHash: await sameFastHash(src, analytics),
  };
  return { plan, notCompared };
}
