// What the analytics tables look like: columns with types, the conflict key, the bookkeeping columns.
import type { Sql } from "postgres";
import type { ColumnType } from "../decode/types.ts";

export const POSITION_COLUMNS = ["_cdc_commit_lsn", "_cdc_lsn", "_cdc_synced_at"] as const;

export interface TableInfo {
  /** as configured: table or schema.table */
  name: string;
  /** quoted, schema-qualified identifier for SQL */
  ident: string;
  columns: Map<string, ColumnType & { sqlType: string; notNull: boolean; hasDefault: boolean }>;
  primaryKey: string[];
  uniqueKeys: string[][];
}

export const quoteIdent = (s: string) => `"${s.replace(/"/g, '""')}"`;
export const qualify = (name: string) => name.split(".").map(quoteIdent).join(".");

export class SchemaError extends Error {
  override name = "SchemaError";
  readonly code = "SCHEMA";
}

export async function introspectTable(sql: Sql, name: string): Promise<TableInfo> {
  const ident = qualify(name);
  const [rel] = await sql`SELECT to_regclass(${ident}) AS oid`;
  if (!rel?.oid) throw new SchemaError(`table ${name} does not exist in the analytics database (apply sql/analytics-ddl.sql)`);
  const cols = await sql<
    { name: string; type: string; is_array: boolean; scale: number | null; sql_type: string; not_null: boolean; has_default: boolean }[]
  >`
    SELECT a.attname AS name,
           CASE WHEN t.typcategory = 'A' THEN et.typname
                WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END AS type,
           t.typcategory = 'A' AS is_array,
           CASE WHEN a.atttypmod > 4 AND (t.typname = 'numeric' OR et.typname = 'numeric')
                THEN (a.atttypmod - 4) & 65535 END AS scale,
           format_type(a.atttypid, a.atttypmod) AS sql_type,
           a.attnotnull AS not_null, a.atthasdef AS has_default
    FROM pg_attribute a
    JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
    LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
    WHERE a.attrelid = ${ident}::regclass AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum`;
  const keys = await sql<{ cols: string[]; primary: boolean }[]>`
    SELECT array_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum)) AS cols, i.indisprimary AS primary
    FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[])
    WHERE i.indrelid = ${ident}::regclass AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
    GROUP BY i.indexrelid, i.indisprimary`;
  const columns = new Map<string, ColumnType & { sqlType: string; notNull: boolean; hasDefault: boolean }>();
  for (const c of cols)
    columns.set(c.name, { name: c.name, type: c.type, isArray: c.is_array, scale: c.scale, sqlType: c.sql_type, notNull: c.not_null, hasDefault: c.has_default });
  return {
    name,
    ident,
    columns,
    primaryKey: keys.find((k) => k.primary)?.cols ?? [],
    uniqueKeys: keys.map((k) => k.cols),
  };
}

/** Problems that stop a mapping from working, each with the statement that fixes it. */
export function tableProblems(t: TableInfo, key: string[], softDeleteColumn?: string): string[] {
  const out: string[] = [];
  for (const c of POSITION_COLUMNS)
    if (!t.columns.has(c))
      out.push(`${t.name}: missing bookkeeping column ${c} (ALTER TABLE ${t.ident} ADD COLUMN ${c} ${c === "_cdc_synced_at" ? "timestamptz" : "bigint"})`);
  if (!key.length) out.push(`${t.name}: no primary key and no key configured (set key = [...] in the mapping)`);
  for (const k of key) if (!t.columns.has(k)) out.push(`${t.name}: key column ${k} does not exist`);
  const sorted = [...key].sort().join(",");
  if (key.length && !t.uniqueKeys.some((u) => [...u].sort().join(",") === sorted))
    out.push(`${t.name}: key (${key.join(", ")}) has no unique index (CREATE UNIQUE INDEX ON ${t.ident} (${key.map(quoteIdent).join(", ")}))`);
  if (softDeleteColumn && !t.columns.has(softDeleteColumn))
    out.push(`${t.name}: soft delete column ${softDeleteColumn} does not exist (ALTER TABLE ${t.ident} ADD COLUMN ${softDeleteColumn} timestamptz)`);
  return out;
}

/** The sink's own tables: checkpoints, dead letters, tombstones of deleted keys. */
export async function ensureStateTables(sql: Sql, schema: string): Promise<void> {
  const s = quoteIdent(schema);
  await sql.begin(async (tx) => {
    // concurrent instances starting together would race on CREATE ... IF NOT EXISTS
    await tx`SELECT pg_advisory_xact_lock(hashtext(${"cdc_sink_state:" + schema}))`;
    await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${s}.checkpoints (
      stream text NOT NULL, part text NOT NULL, position bigint NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (stream, part))`);
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${s}.dead_letters (
      id bigserial PRIMARY KEY, failed_at timestamptz NOT NULL DEFAULT now(),
      stream text NOT NULL, part text NOT NULL, position text NOT NULL,
      target_table text, stage text NOT NULL, key text, value text, error text NOT NULL, error_code text,
      key_bytes bytea, value_bytes bytea)`);
    await tx.unsafe(`ALTER TABLE ${s}.dead_letters ADD COLUMN IF NOT EXISTS key_bytes bytea, ADD COLUMN IF NOT EXISTS value_bytes bytea`);
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS ${s}.tombstones (
      tbl text NOT NULL, key text NOT NULL, commit_lsn bigint NOT NULL, lsn bigint NOT NULL,
      deleted_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tbl, key))`);
  });
}
