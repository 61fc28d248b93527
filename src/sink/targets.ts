// Mappings resolved against the analytics tables they write to.
import type { Sql } from "postgres";
import type { Mapping } from "../config.ts";
import { encodingOf } from "../decode/values.ts";
import { SchemaError } from "../errors.ts";
import type { TableInfo, Target } from "../model.ts";
import { introspectTable, POSITION_COLUMNS, tableProblems } from "./schema.ts";

export function resolveTarget(mapping: Mapping, table: TableInfo): Target {
  const key = mapping.key ?? table.primaryKey;
  const sourceOf = new Map<string, string>();
  for (const [src, dst] of Object.entries(mapping.rename)) sourceOf.set(dst, src);
  const bookkeeping = new Set<string>([...POSITION_COLUMNS, mapping.soft_delete_column]);
  const allowed = mapping.columns ? new Set(mapping.columns) : null;
  const columns = new Map<string, string>();
  for (const col of table.columns.keys()) {
    if (bookkeeping.has(col) && !key.includes(col)) continue;
    const src = sourceOf.get(col) ?? col;
    if (allowed && !allowed.has(src) && !key.includes(col)) continue;
    columns.set(src, col);
  }
  const keyFields = new Map<string, string>();
  for (const k of key) keyFields.set(sourceOf.get(k) ?? k, k);
  return { mapping, table, key, columns, keyFields, keyIndex: new Map(key.map((k, i) => [k, i])), encoding: encodingOf(mapping.debezium) };
}

/** Introspects every mapped table; throws SchemaError listing every problem found. */
export async function loadTargets(sql: Sql, mappings: Mapping[]): Promise<Target[]> {
  const problems: string[] = [];
  const targets: Target[] = [];
  const cache = new Map<string, TableInfo>();
  for (const m of mappings) {
    let info = cache.get(m.table);
    try {
      info ??= await introspectTable(sql, m.table);
    } catch (e) {
      if (e instanceof SchemaError) {
        problems.push(...e.problems);
        continue;
      }
      throw e;
    }
    cache.set(m.table, info);
    const key = m.key ?? info.primaryKey;
    problems.push(...tableProblems(info, key, m.delete_mode === "soft" ? m.soft_delete_column : undefined));
    for (const src of Object.keys(m.rename)) if (!info.columns.has(m.rename[src]!)) problems.push(`${m.table}: rename target ${m.rename[src]} does not exist`);
    targets.push(resolveTarget(m, info));
  }
  if (problems.length) throw new SchemaError(problems);
  return targets;
}
