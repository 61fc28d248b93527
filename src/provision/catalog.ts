// A source table as its PostgreSQL catalog describes it: each column's exact type (numeric
// precision, varchar length, arrays), what an enum or domain is, and the primary key.
import type { Sql } from "postgres";
import { qualify } from "../sink/schema.ts";

export interface SourceColumn {
  name: string;
  /** format_type(), e.g. numeric(12,2), character varying(20), integer[], public.mood */
  sqlType: string;
  /** a domain's base type (arrays of a domain: the base type's array) */
  domainBase?: string;
  /** an enum, or an array of one */
  enum?: { schema: string; name: string; labels: string[]; array: boolean };
  /** a type outside pg_catalog (an extension's, say): it may not exist in analytics */
  userDefined: boolean;
}

export interface SourceTable {
  columns: SourceColumn[];
  /** the primary key, or else the replica identity index */
  key: string[];
}

/** The table's columns and key, or undefined when it does not exist (or is not visible to the role). */
export async function readCatalog(sql: Sql, table: string): Promise<SourceTable | undefined> {
  const [rel] = await sql.unsafe(`SELECT to_regclass($1)::oid::text AS oid`, [qualify(table)]);
  if (!rel?.oid) return undefined;
  const rows = await sql.unsafe(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS sql_type,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
            WHEN et.typtype = 'd' THEN format_type(et.typbasetype, et.typtypmod) || '[]' END AS domain_base,
       coalesce(et.typtype, t.typtype) = 'e' AS is_enum, et.oid IS NOT NULL AS is_array,
       n.nspname AS type_schema, coalesce(et.typname, t.typname) AS type_name,
       (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder)::text FROM pg_enum e WHERE e.enumtypid = coalesce(et.oid, t.oid)) AS labels
     FROM pg_attribute a
     JOIN pg_type t ON t.oid = a.atttypid
     LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
     JOIN pg_namespace n ON n.oid = coalesce(et.typnamespace, t.typnamespace)
     WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
     ORDER BY a.attnum`,
    [rel.oid],
  );
  const keys = await sql.unsafe(
    `SELECT i.indisprimary AS primary, json_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum))::text AS cols
     FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[])
     WHERE i.indrelid = $1::oid AND (i.indisprimary OR i.indisreplident)
     GROUP BY i.indexrelid, i.indisprimary ORDER BY i.indisprimary DESC`,
    [rel.oid],
  );
  return {
    columns: rows.map((r) => ({
      name: r.name as string,
      sqlType: r.sql_type as string,
      domainBase: (r.domain_base as string | null) ?? undefined,
      enum: r.is_enum ? { schema: r.type_schema as string, name: r.type_name as string, labels: r.labels ? (JSON.parse(r.labels as string) as string[]) : [], array: r.is_array as boolean } : undefined,
      userDefined: !["pg_catalog", "information_schema"].includes(r.type_schema as string),
    })),
    key: keys[0]?.cols ? (JSON.parse(keys[0].cols as string) as string[]) : [],
  };
}
