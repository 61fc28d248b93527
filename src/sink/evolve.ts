// Schema changes on the analytics side: columns a source gained are added to the analytics table
// before the first change that carries them; the mapping's target is resolved again (a new Target:
// the old one stays valid for the changes already batched).
import type { Sql } from "postgres";
import type { Logger } from "../log.ts";
import type { SchemaChange, Target } from "../model.ts";
import { introspectTable, quoteIdent } from "./schema.ts";
import { resolveTarget } from "./targets.ts";

export async function evolveTable(sql: Sql, change: SchemaChange, log: Logger): Promise<Target> {
  const t = change.target;
  for (const c of change.add) {
    if (!c.sqlType) throw new Error(`no SQL type for new column ${c.column} of ${t.table.name}`);
    await sql.unsafe(`ALTER TABLE ${t.table.ident} ADD COLUMN IF NOT EXISTS ${quoteIdent(c.column)} ${c.sqlType}`);
    log.info("source column added to analytics", { table: t.table.name, column: c.column, type: c.sqlType });
  }
  return resolveTarget(t.mapping, await introspectTable(sql, t.table.name));
}
