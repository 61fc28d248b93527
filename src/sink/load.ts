// Bulk loads of an initial snapshot: COPY text rows straight into an empty analytics table, or,
// when the table already has rows (a snapshot begun before a crash), COPY into a temporary table
// merged with the same position guard and tombstone check as every other write. Each call is one
// analytics transaction.
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Sql } from "postgres";
import type { Target } from "../model.ts";
import { quoteIdent } from "./schema.ts";
import { notDeletedLater, softDeleteColumn } from "./statements.ts";

export interface BulkLoader {
  /** True when the table has no row: the snapshot may COPY straight into it. */
  isEmpty(t: Target): Promise<boolean>;
  /**
   * Loads COPY text rows — the target columns `columns` in order, then the commit LSN, the LSN and
   * the sync time — in one transaction.
   */
  load(t: Target, columns: string[], rows: Readable, direct: boolean): Promise<void>;
}

export function createBulkLoader(sql: Sql, stateSchema: string): BulkLoader {
  const state = quoteIdent(stateSchema);
  return {
    async isEmpty(t) {
      const [r] = await sql.unsafe(`SELECT NOT EXISTS (SELECT 1 FROM ${t.table.ident}) AS empty`);
      return r!.empty as boolean;
    },
    async load(t, columns, rows, direct) {
      const list = [...columns.map(quoteIdent), "_cdc_commit_lsn", "_cdc_lsn", "_cdc_synced_at"].join(", ");
      await sql.begin(async (tx) => {
        if (direct) {
          await pipeline(rows, await tx.unsafe(`COPY ${t.table.ident} (${list}) FROM STDIN`).writable());
          return;
        }
        const staging = quoteIdent(`cdc_snapshot_${process.pid}_${Date.now()}`);
        await tx.unsafe(`CREATE TEMP TABLE ${staging} ON COMMIT DROP AS SELECT ${list} FROM ${t.table.ident} WITH NO DATA`);
        await pipeline(rows, await tx.unsafe(`COPY ${staging} (${list}) FROM STDIN`).writable());
        const keySet = new Set(t.key);
        const softCol = softDeleteColumn(t);
        const updates = columns.filter((c) => !keySet.has(c)).map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`);
        updates.push("_cdc_commit_lsn = EXCLUDED._cdc_commit_lsn", "_cdc_lsn = EXCLUDED._cdc_lsn", "_cdc_synced_at = EXCLUDED._cdc_synced_at");
        if (softCol) updates.push(`${softCol} = NULL`);
        // the key as the applier writes it in the tombstone table: a JSON array of the values' text
        const keyText = `'[' || ${t.key.map((k) => `to_json(u.${quoteIdent(k)}::text)::text`).join(" || ',' || ")} || ']'`;
        await tx.unsafe(
          `INSERT INTO ${t.table.ident} AS t (${list})
           SELECT ${[...columns.map((c) => `u.${quoteIdent(c)}`), "u._cdc_commit_lsn", "u._cdc_lsn", "u._cdc_synced_at"].join(", ")}
           FROM (SELECT s.*, s._cdc_commit_lsn AS commit_lsn, s._cdc_lsn AS lsn, ${keyText.replaceAll("u.", "s.")} AS key_text FROM ${staging} s) u
           WHERE ${notDeletedLater(state, "$1")}
           ON CONFLICT (${t.key.map(quoteIdent).join(", ")}) DO UPDATE SET ${updates.join(", ")}
           WHERE (COALESCE(t._cdc_commit_lsn, -1), COALESCE(t._cdc_lsn, -1)) < (EXCLUDED._cdc_commit_lsn, EXCLUDED._cdc_lsn)`,
          [t.table.name],
        );
      });
    },
  };
}
