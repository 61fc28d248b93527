// The initial snapshot: existing rows read inside the snapshot the slot exported at its consistent
// point, so that together with the stream from that point every change is seen exactly once.
import type { PgSourceConfig } from "../../config.ts";
import type { PgRecord } from "../../decode/pgchanges.ts";
import { errorInfo } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { qualify, quoteIdent } from "../../sink/schema.ts";
import { openSource } from "./setup.ts";

export interface SnapshotDeps {
  cfg: PgSourceConfig;
  /** the exported snapshot and its LSN */
  snapshot: { name: string; lsn: bigint };
  /** source table -> source columns to read */
  tables: Map<string, string[]>;
  push(r: PgRecord): void;
  /** resolves once the reader may push more (flow control) */
  room(): Promise<void>;
  closed(): boolean;
  log: Logger;
  onError(e: unknown): void;
}

/**
 * Imports the exported snapshot (it must happen before START_REPLICATION on the exporting
 * connection, which ends the export), then copies in the background. Resolves once imported.
 */
export async function startSnapshot(d: SnapshotDeps): Promise<void> {
  const reader = openSource(d.cfg);
  let imported!: () => void;
  const ready = new Promise<void>((r) => (imported = r));
  const task = reader.begin("ISOLATION LEVEL REPEATABLE READ READ ONLY", async (tx) => {
    await tx.unsafe(`SET TRANSACTION SNAPSHOT '${d.snapshot.name.replace(/'/g, "")}'`);
    imported();
    for (const [table, cols] of d.tables) {
      const q = `SELECT ${cols.map((c) => `${quoteIdent(c)}::text`).join(", ")} FROM ${qualify(table)}`;
      let n = 0;
      for await (const rows of tx.unsafe(q).cursor(2000)) {
        for (const r of rows) d.push({ kind: "row", source: d.cfg.name, table, lsn: d.snapshot.lsn, values: r as Record<string, string | null> });
        n += rows.length;
        await d.room();
        if (d.closed()) return;
      }
      d.log.info("snapshot copied", { table, rows: n });
    }
  });
  task.then(
    () => {
      d.push({ kind: "snapshot-done", source: d.cfg.name });
      void reader.end();
    },
    (e) => {
      d.log.error("snapshot failed; it restarts with the next run", errorInfo(e));
      d.onError(e);
      void reader.end();
    },
  );
  await Promise.race([ready, task]);
}
