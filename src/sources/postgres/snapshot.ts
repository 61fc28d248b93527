// The initial snapshot: existing rows read inside the snapshot the slot exported at its consistent
// point S, so that together with the stream from S every change is seen exactly once. Rows go
// source COPY -> analytics COPY without being decoded (an empty table takes them directly; a table
// with rows, from a snapshot a crash interrupted, merges them position-guarded and then removes the
// rows of the earlier copy it did not overwrite: the source deleted them since), each table read in
// `parallelism` ranges of its pages by as many connections that all imported the snapshot. Rows
// carry position (0, S): below every streamed change.
import { Transform } from "node:stream";
import type { Sql } from "postgres";
import type { PgSourceConfig } from "../../config.ts";
import { errorInfo, isDataError } from "../../errors.ts";
import { failpoint } from "../../failpoints.ts";
import type { Logger } from "../../log.ts";
import type { Metrics } from "../../metrics.ts";
import type { Target } from "../../model.ts";
import type { BulkLoader } from "../../sink/load.ts";
import { qualify, quoteIdent } from "../../sink/schema.ts";
import { openSource } from "./setup.ts";

/** Tables smaller than this many pages (64 MiB) are read in one range. */
const MIN_PAGES_TO_SPLIT = 8192;
const PROGRESS_MS = 5000;

export interface SnapshotDeps {
  cfg: PgSourceConfig;
  /** the source's checkpoint stream (dead letters of rejected rows are filed under it) */
  stream: string;
  snapshot: { name: string; lsn: bigint };
  /** source table -> target */
  tables: Map<string, Target>;
  loader: BulkLoader;
  metrics: Metrics;
  log: Logger;
}

export interface Reader {
  tx: Sql;
  end(): Promise<void>;
}

/**
 * A connection of its own holding a REPEATABLE READ transaction in the exported snapshot until
 * end(). Plain BEGIN on a one-connection pool: a COMMIT queued by sql.begin() after a COPY TO
 * STDOUT stream sometimes never ran. The transaction only reads: end() closes the connection
 * without a COMMIT, which would wait for ever behind a COPY whose rows nobody reads any more (a
 * load that failed half-way).
 */
export async function openReader(cfg: PgSourceConfig, snapshotName: string): Promise<Reader> {
  const sql = openSource(cfg);
  try {
    await sql.unsafe("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    await sql.unsafe(`SET TRANSACTION SNAPSHOT '${snapshotName.replace(/'/g, "")}'`);
  } catch (e) {
    await sql.end({ timeout: 1 }).catch(() => {});
    throw e;
  }
  return {
    tx: sql,
    async end() {
      await sql.end({ timeout: 1 }).catch(() => {});
    },
  };
}

/**
 * Counts COPY text rows (one newline each: newlines inside values are escaped) as they pass, and
 * passes them on in chunks of about 256 KiB: the source sends a message per row, and a write per
 * row on the analytics side cost more than the copy itself.
 */
function rowChunks(onRows: (n: number) => void): Transform {
  let held: Buffer[] = [];
  let bytes = 0;
  const pass = (t: Transform) => {
    const out = held.length === 1 ? held[0]! : Buffer.concat(held, bytes);
    held = [];
    bytes = 0;
    let n = 0;
    for (let i = out.indexOf(10); i !== -1; i = out.indexOf(10, i + 1)) n++;
    onRows(n);
    t.push(out);
  };
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      held.push(chunk);
      bytes += chunk.length;
      if (bytes >= CHUNK_BYTES) pass(this);
      done();
    },
    flush(done) {
      if (bytes) pass(this);
      done();
    },
  });
}

const CHUNK_BYTES = 256 << 10;

/** Page ranges as ctid conditions (a TID range scan reads only those pages). */
function ranges(pages: number, parts: number): string[] {
  if (parts <= 1 || pages < MIN_PAGES_TO_SPLIT) return [""];
  const step = Math.ceil(pages / parts);
  return Array.from({ length: parts }, (_, i) => {
    const lo = i === 0 ? "" : `ctid >= '(${i * step},0)'::tid`;
    const hi = i === parts - 1 ? "" : `ctid < '(${(i + 1) * step},0)'::tid`;
    return `WHERE ${[lo, hi].filter(Boolean).join(" AND ")}`;
  });
}

async function copyTable(d: SnapshotDeps, readers: Reader[], table: string, t: Target): Promise<number> {
  const [stat] = await readers[0]!.tx.unsafe(`SELECT relpages::int AS pages, greatest(reltuples, 0)::bigint AS rows FROM pg_class WHERE oid = $1::regclass`, [qualify(table)]);
  const estimate = Number(stat?.rows ?? 0);
  const direct = await d.loader.isEmpty(t);
  const sourceCols = [...t.columns.keys()];
  const targetCols = sourceCols.map((c) => t.columns.get(c)!);
  const select = `${sourceCols.map((c) => `${quoteIdent(c)}::text`).join(", ")}, '0', '${d.snapshot.lsn}', now()::text`;
  let copied = 0;
  const started = Date.now();
  d.metrics.snapshotRowsEstimated.set({ table: t.table.name }, estimate);
  const progress = setInterval(() => {
    const secs = (Date.now() - started) / 1000;
    const rate = copied / secs;
    d.log.info("snapshot progress", { table, rows: copied, estimate, rowsPerSecond: Math.round(rate), etaSeconds: rate && estimate > copied ? Math.round((estimate - copied) / rate) : undefined });
  }, PROGRESS_MS);
  const parts = ranges(Number(stat?.pages ?? 0), readers.length);
  const copy = (i: number) => readers[i]!.tx.unsafe(`COPY (SELECT ${select} FROM ${qualify(table)} ${parts[i]}) TO STDOUT`).readable();
  let rejected: unknown;
  try {
    const results = await Promise.allSettled(
      parts.map(async (_, i) => {
        const source = await copy(i);
        const counted = source.pipe(
          rowChunks((n) => {
            copied += n;
            d.metrics.snapshotRows.inc({ table: t.table.name }, n);
          }),
        );
        // the source connection lost mid-COPY: the load fails with it (pipe() passes data, not errors)
        source.once("error", (e) => counted.destroy(e));
        await d.loader.load(t, targetCols, counted, direct);
      }),
    );
    const failures = results.flatMap((r) => (r.status === "rejected" ? [r.reason] : []));
    if (failures.some((e) => !isDataError(e))) throw failures.find((e) => !isDataError(e));
    rejected = failures[0];
  } finally {
    clearInterval(progress);
  }
  if (rejected !== undefined) {
    // a row the analytics table rejects: every range again, row by row through the applier, the
    // rejected rows dead-lettered (ranges that committed change nothing the second time)
    d.log.warn("the analytics table rejected a snapshot row; loading the table again through the applier", { table, ...errorInfo(rejected) });
    const coord = { stream: d.stream, part: `${d.cfg.name}#snapshot`, position: d.snapshot.lsn };
    let deadLetters = 0;
    for (let i = 0; i < parts.length; i++) deadLetters += (await d.loader.loadRows(t, sourceCols, await copy(i), coord)).deadLetters;
    d.log.warn("snapshot rows dead-lettered", { table, deadLetters });
  }
  if (!direct) {
    const pruned = await d.loader.prune(t, d.stream, d.snapshot.lsn);
    if (pruned) d.log.info("snapshot removed the rows an earlier copy left that the source no longer has", { table, rows: pruned });
  }
  d.log.info("snapshot copied", { table, rows: copied, seconds: (Date.now() - started) / 1000, direct });
  failpoint("after-snapshot-table");
  return copied;
}

/**
 * Imports the exported snapshot on every reader (before START_REPLICATION on the exporting
 * connection, which ends the export); resolves with the copy, which runs in the background.
 */
export async function startSnapshot(d: SnapshotDeps): Promise<{ done: Promise<void> }> {
  const parallelism = Math.max(1, d.cfg.snapshot_parallelism);
  await d.loader.recordSnapshot(d.stream, d.snapshot.lsn);
  const readers: Reader[] = [];
  try {
    for (let i = 0; i < parallelism; i++) readers.push(await openReader(d.cfg, d.snapshot.name));
  } catch (e) {
    await Promise.all(readers.map((r) => r.end()));
    throw e;
  }
  const done = (async () => {
    try {
      for (const [table, t] of d.tables) await copyTable(d, readers, table, t);
    } finally {
      await Promise.all(readers.map((r) => r.end()));
    }
  })();
  return { done };
}
