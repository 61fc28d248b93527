// What the analytics tables look like: columns with types, the conflict key, the bookkeeping columns.
import type { Sql } from "postgres";
import { SchemaError } from "../errors.ts";
import type { Column, TableInfo } from "../model.ts";

export const POSITION_COLUMNS = ["_cdc_commit_lsn", "_cdc_lsn", "_cdc_synced_at"] as const;

/** The one way an identifier becomes SQL text. */
export const quoteIdent = (s: string) => `"${s.replace(/"/g, '""')}"`;
export const qualify = (name: string) => name.split(".").map(quoteIdent).join(".");

export async function introspectTable(sql: Sql, name: string): Promise<TableInfo> {
  const ident = qualify(name);
  const [rel] = await sql`SELECT to_regclass(${ident}) AS oid`;
  if (!rel?.oid) throw new SchemaError([`table ${name} does not exist in the analytics database (apply sql/analytics-ddl.sql)`]);
  const cols = await sql<
    { name: string; type: string; is_array: boolean; typmod: number; sql_type: string; cast_type: string; not_null: boolean; has_default: boolean }[]
  >`
    SELECT a.attname AS name,
           CASE WHEN t.typcategory = 'A' THEN et.typname
                WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END AS type,
           t.typcategory = 'A' AS is_array,
           CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod,
           format_type(a.atttypid, a.atttypmod) AS sql_type,
           -- without the modifier; bpchar by name (format_type says "character", which is char(1))
           CASE WHEN t.typname = 'bpchar' THEN 'bpchar' WHEN et.typname = 'bpchar' THEN 'bpchar[]' ELSE format_type(a.atttypid, NULL) END AS cast_type,
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
  const columns = new Map<string, Column>();
  for (const c of cols)
    columns.set(c.name, { name: c.name, type: c.type, isArray: c.is_array, ...typmodParts(c.type, c.typmod), sqlType: c.sql_type, castType: c.cast_type, notNull: c.not_null, hasDefault: c.has_default });
  return {
    name,
    ident,
    columns,
    primaryKey: keys.find((k) => k.primary)?.cols ?? [],
    uniqueKeys: keys.map((k) => k.cols),
  };
}

/** What a type modifier means for the type: numeric precision and scale, fractional-second digits, length. */
export function typmodParts(type: string, typmod: number): { precision: number | null; scale: number | null } {
  if (typmod < 0) return { precision: null, scale: null };
  // PostgreSQL 15+ packs the scale as 11 signed bits (numeric(6,-2))
  if (type === "numeric") return { precision: ((typmod - 4) >> 16) & 65535, scale: ((((typmod - 4) & 0x7ff) ^ 1024) - 1024) };
  if (type === "varchar" || type === "bpchar") return { precision: typmod - 4, scale: null };
  if (/^(time|timetz|timestamp|timestamptz)$/.test(type)) return { precision: typmod, scale: null };
  if (type === "interval") return { precision: (typmod & 0xffff) === 0xffff ? null : typmod & 0xffff, scale: null };
  return { precision: null, scale: null };
}

/** Problems that stop a mapping from working, each with the statement that fixes it. */
export function tableProblems(t: TableInfo, key: string[], softDeleteColumn?: string): string[] {
  const out: string[] = [];
  for (const c of POSITION_COLUMNS)
    if (!t.columns.has(c))
      out.push(`${t.name}: missing bookkeeping column ${c} (ALTER TABLE ${t.ident} ADD COLUMN ${c} ${c === "_cdc_synced_at" ? "timestamptz" : "numeric(20,0)"})`);
  if (!key.length) out.push(`${t.name}: no primary key and no key configured (set key = [...] in the mapping)`);
  for (const k of key) if (!t.columns.has(k)) out.push(`${t.name}: key column ${k} does not exist`);
  const sorted = [...key].sort().join(",");
  if (key.length && !t.uniqueKeys.some((u) => [...u].sort().join(",") === sorted))
    out.push(`${t.name}: key (${key.join(", ")}) has no unique index (CREATE UNIQUE INDEX ON ${t.ident} (${key.map(quoteIdent).join(", ")}))`);
  if (softDeleteColumn && !t.columns.has(softDeleteColumn))
    out.push(`${t.name}: soft delete column ${softDeleteColumn} does not exist (ALTER TABLE ${t.ident} ADD COLUMN ${softDeleteColumn} timestamptz)`);
  return out;
}

