// Bulk loads of an initial snapshot: COPY text rows straight into an empty analytics table, or,
// when the table already has rows (a snapshot begun before a crash), COPY into a temporary table
// merged with the same position guard and tombstone check as every other write. Each call is one
// analytics transaction. When the database rejects a row of a COPY (a value too long, a
// constraint), the table's rows are read again and applied through the applier instead, which
// isolates the rejected rows as dead letters (loadRows).
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import type { Sql } from "postgres";
import { ChangeBatch } from "../batch.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { type Change, type Coord, Kind, type Target } from "../model.ts";
import { createApplier } from "./apply.ts";
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
  /**
   * The same rows (source columns `sourceColumns` in order, then commit LSN, LSN and sync time)
   * through the applier, position-guarded: a row the database rejects is a dead letter at `coord`.
   * Returns the rows applied and dead-lettered.
   */
  loadRows(t: Target, sourceColumns: string[], rows: Readable, coord: Coord): Promise<{ applied: number; deadLetters: number }>;
  /** Records that `stream` is about to copy its tables at snapshot `lsn` (before any row of it commits). */
  recordSnapshot(stream: string, lsn: bigint): Promise<void>;
  /**
   * After `stream`'s snapshot at `lsn` merged into a table that had rows: removes (soft-deletes, per
   * the mapping) the rows an earlier copy of this stream wrote that this one did not overwrite —
   * the source deleted them since. Rows anything else wrote are left alone. Returns how many.
   */
  prune(t: Target, stream: string, lsn: bigint): Promise<number>;
}

/**
 * Pipes COPY rows into a COPY FROM STDIN; resolves once the database has them all. When the
 * database rejects the COPY, the rest of the rows is read and dropped (the source connection stays
 * usable) and the error is thrown.
 */
function copyThrough(rows: Readable, w: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    w.once("finish", () => resolve());
    w.once("error", (e) => {
      rows.unpipe(w);
      if (rows.readableEnded) return reject(e);
      rows.once("end", () => reject(e));
      rows.once("error", () => reject(e));
      rows.resume();
    });
    rows.once("error", (e) => {
      w.destroy(e);
      reject(e);
    });
    rows.pipe(w);
  });
}

/** One COPY text field: `\N` is NULL; backslash escapes as PostgreSQL writes them. */
function copyField(f: string): string | null {
  if (f === "\\N") return null;
  if (!f.includes("\\")) return f;
  return f.replace(/\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))/g, (_, oct, hex, c) => {
    if (oct) return String.fromCharCode(parseInt(oct, 8));
    if (hex) return String.fromCharCode(parseInt(hex, 16));
    return ({ b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v" } as Record<string, string>)[c] ?? c;
  });
}

const ROWS_PER_BATCH = 5000;

/** `maxBatchBytes`: the rows loadRows holds and applies at once, as `[batch] max_bytes` bounds a batch. */
export function createBulkLoader(sql: Sql, stateSchema: string, opts: { log: Logger; metrics?: Metrics; maxValueBytes?: number; maxBatchBytes?: number }): BulkLoader {
  const maxBatchBytes = opts.maxBatchBytes ?? 16 << 20;
  const state = quoteIdent(stateSchema);
  const apply = createApplier({ sql, stateSchema, log: opts.log, metrics: opts.metrics, maxValueBytes: opts.maxValueBytes });
  return {
    async isEmpty(t) {
      const [r] = await sql.unsafe(`SELECT NOT EXISTS (SELECT 1 FROM ${t.table.ident}) AS empty`);
      return r!.empty as boolean;
    },
    async load(t, columns, rows, direct) {
      const list = [...columns.map(quoteIdent), "_cdc_commit_lsn", "_cdc_lsn", "_cdc_synced_at"].join(", ");
      await sql.begin(async (tx) => {
        if (direct) {
          await copyThrough(rows, await tx.unsafe(`COPY ${t.table.ident} (${list}) FROM STDIN`).writable());
          return;
        }
        const staging = quoteIdent(`cdc_snapshot_${process.pid}_${Date.now()}`);
        await tx.unsafe(`CREATE TEMP TABLE ${staging} ON COMMIT DROP AS SELECT ${list} FROM ${t.table.ident} WITH NO DATA`);
        await copyThrough(rows, await tx.unsafe(`COPY ${staging} (${list}) FROM STDIN`).writable());
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
    async recordSnapshot(stream, lsn) {
      await sql.unsafe(`INSERT INTO ${state}.snapshots (stream, lsn) VALUES ($1, $2::numeric) ON CONFLICT DO NOTHING`, [stream, lsn.toString()]);
    },
    async prune(t, stream, lsn) {
      const earlier = `_cdc_commit_lsn = 0 AND _cdc_lsn IN (SELECT lsn FROM ${state}.snapshots WHERE stream = $1 AND lsn < $2::numeric)`;
      const softCol = softDeleteColumn(t);
      const r = softCol
        ? await sql.unsafe(`UPDATE ${t.table.ident} SET ${softCol} = now(), _cdc_lsn = $2::numeric, _cdc_synced_at = now() WHERE ${earlier} AND ${softCol} IS NULL`, [stream, lsn.toString()])
        : await sql.unsafe(`DELETE FROM ${t.table.ident} WHERE ${earlier}`, [stream, lsn.toString()]);
      return r.count;
    },
    async loadRows(t, sourceColumns, rows, coord) {
      const out = { applied: 0, deadLetters: 0 };
      const cols = sourceColumns.map((c) => t.columns.get(c)!);
      let pending: Change[] = [];
      let pendingBytes = 0;
      const flush = async () => {
        if (!pending.length) return;
        const batch = new ChangeBatch({ maxEvents: Number.MAX_SAFE_INTEGER, maxBytes: Number.MAX_SAFE_INTEGER, maxLatencyMs: 0 });
        const now = Date.now();
        for (const c of pending) batch.add(c, now);
        pending = [];
        pendingBytes = 0;
        const r = await apply(batch);
        out.applied += r.applied;
        out.deadLetters += r.deadLetters;
      };
      // an error of the input (the source connection lost) closes the lines, and is thrown after them
      const lines = createInterface({ input: rows, crlfDelay: Infinity });
      let failed: unknown;
      rows.once("error", (e) => {
        failed = e;
        lines.close();
      });
      try {
        for await (const line of lines) {
          if (!line) continue;
          const fields = line.split("\t").map(copyField);
          const vals = fields.slice(0, cols.length);
          const key: (string | null)[] = new Array(t.key.length).fill(null);
          sourceColumns.forEach((c, i) => {
            const k = t.keyFields.get(c);
            if (k !== undefined) key[t.keyIndex.get(k)!] = vals[i]!;
          });
          const keyText = JSON.stringify(key);
          const lsn = BigInt(fields[cols.length + 1]!);
          pending.push({ target: t, kind: Kind.Upsert, key, keyText, cols, vals, commitLsn: 0n, lsn, sourceTs: 0, coord, raw: { key: keyText, value: line } });
          pendingBytes += line.length;
          if (pending.length >= ROWS_PER_BATCH || pendingBytes >= maxBatchBytes) await flush();
        }
        if (failed !== undefined) throw failed;
        await flush();
      } catch (e) {
        // the rest of the COPY is not read: the stream goes (its connection with the caller's end())
        rows.destroy();
        throw e;
      }
      return out;
    },
  };
}
