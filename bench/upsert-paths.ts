// The applier's unnest upsert against COPY into a temporary table then one merge statement, on the
// same 5000-change batches of fact_orders (100k stored rows, 5k tombstones), alternating rounds.
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { ChangeBatch as Batch } from "../src/batch.ts";
import type { Change } from "../src/model.ts";
import { decodeDebezium } from "../src/decode/debezium.ts";
import { silentLogger } from "../src/log.ts";
import { createApplier } from "../src/sink/apply.ts";
import { ensureStateTables } from "../src/sink/state.ts";
import { loadTargets } from "../src/sink/targets.ts";
import { envelope, keyOf, newClock } from "../test/support/debezium.ts";
import { analyticsDb, config, sinkToml } from "../test/support/harness.ts";
import { startCluster } from "../test/support/pg.ts";

const ROWS = 100_000;
const BATCH = 5000;
const BATCHES_PER_ROUND = 20;
const COLS = ["customer_id", "status", "total_amount", "currency", "created_at", "updated_at", "id"] as const;

const MERGE = `INSERT INTO fact_orders AS t (${COLS.join(", ")}, _cdc_commit_lsn, _cdc_lsn, _cdc_synced_at)
SELECT u.customer_id::bigint, u.status, u.total_amount::numeric, u.currency, u.created_at::timestamptz, u.updated_at::timestamptz, u.id::bigint, u.commit_lsn, u.lsn, now()
FROM stage u
WHERE NOT EXISTS (SELECT 1 FROM cdc_sink.tombstones tb WHERE tb.tbl = 'fact_orders' AND tb.key = u.key_text AND (tb.commit_lsn, tb.lsn) >= (u.commit_lsn, u.lsn))
ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, total_amount = EXCLUDED.total_amount,
  currency = EXCLUDED.currency, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
  _cdc_commit_lsn = EXCLUDED._cdc_commit_lsn, _cdc_lsn = EXCLUDED._cdc_lsn, _cdc_synced_at = EXCLUDED._cdc_synced_at
WHERE (COALESCE(t._cdc_commit_lsn, -1), COALESCE(t._cdc_lsn, -1)) < (EXCLUDED._cdc_commit_lsn, EXCLUDED._cdc_lsn)`;

const copyText = (v: string | null) => (v === null ? "\\N" : v.replace(/[\\\t\n\r]/g, (c) => (c === "\\" ? "\\\\" : c === "\t" ? "\\t" : c === "\n" ? "\\n" : "\\r")));

export async function run() {
  const pg = await startCluster();
  const url = await pg.createDatabase("paths");
  const sql = await analyticsDb(url);
  const cfg = config(sinkToml({ bootstrap: "127.0.0.1:9", db: url, group: "bench" }));
  await ensureStateTables(sql, cfg.postgres.state_schema);
  const orders = (await loadTargets(sql, cfg.mappings)).find((t) => t.table.name === "fact_orders")!;
  await sql`INSERT INTO fact_orders (id, customer_id, status, total_amount, currency, created_at, updated_at, _cdc_commit_lsn, _cdc_lsn, _cdc_synced_at)
    SELECT g, g % 977, 'paid', 1.5, 'EUR', now(), now(), 1, 1, now() FROM generate_series(0, ${ROWS - 1}::int) g`;
  await sql`INSERT INTO cdc_sink.tombstones (tbl, key, commit_lsn, lsn) SELECT 'fact_orders', '["' || g || '"]', 1, 1 FROM generate_series(${ROWS}::int, ${ROWS + 4999}::int) g`;
  await sql`VACUUM ANALYZE`;
  const applier = createApplier({ sql, stateSchema: "cdc_sink", log: silentLogger });
  const clock = newClock();
  let offset = 0;

  function makeBatch(): Batch {
    const batch = new Batch({ maxEvents: BATCH * 2, maxBytes: 1 << 30, maxLatencyMs: 1000 });
    const now = Date.now();
    for (let i = 0; i < BATCH; i++) {
      const id = Math.floor(Math.random() * ROWS * 1.05);
      const coord = { stream: "kafka:bench", part: "orders/0", position: BigInt(offset) };
      batch.advance(coord, BigInt(++offset), 300, now);
      const after = { id, customer_id: id % 977, status: "shipped", total_amount: (id % 10000) / 100, currency: "EUR", created_at: "2024-03-01T10:00:00Z", updated_at: "2024-03-02T10:00:00Z" };
      batch.add(decodeDebezium(orders, keyOf(id), JSON.stringify(envelope(clock, "orders", "u", { after })), coord)!, now);
    }
    return batch;
  }

  async function copyThenMerge(batch: Batch): Promise<void> {
    const changes: Change[] = [...batch.tables.values()].flatMap((st) => [...st.pending.values()]);
    const lines = changes.map((c) => {
      const byCol = new Map(c.cols!.map((col, i) => [col, c.vals![i]!]));
      return [...COLS.map((col) => copyText(byCol.get(col) ?? null)), c.commitLsn, c.lsn, copyText(c.keyText)].join("\t");
    });
    await sql.begin(async (tx) => {
      await tx.unsafe(`CREATE TEMP TABLE IF NOT EXISTS stage (${COLS.map((c) => `${c} text`).join(", ")}, commit_lsn int8, lsn int8, key_text text) ON COMMIT DELETE ROWS`);
      await pipeline(Readable.from([`${lines.join("\n")}\n`]), await tx.unsafe("COPY stage FROM STDIN").writable());
      await tx.unsafe(MERGE, [], { prepare: true });
      // what the applier's transaction also does: lock and move the checkpoint
      await tx`SELECT position FROM cdc_sink.checkpoints WHERE stream = 'kafka:bench' AND part = 'orders/0' FOR UPDATE`;
      await tx`INSERT INTO cdc_sink.checkpoints (stream, part, position) VALUES ('kafka:bench', 'orders/0', ${offset})
        ON CONFLICT (stream, part) DO UPDATE SET position = GREATEST(checkpoints.position, EXCLUDED.position), updated_at = now()`;
    });
  }

  const results: Record<string, number[]> = { unnest: [], copyThenMerge: [] };
  for (let round = 0; round < 3; round++) {
    for (const [name, apply] of [
      ["unnest", (b: Batch) => applier(b)],
      ["copyThenMerge", copyThenMerge],
    ] as const) {
      const batches = Array.from({ length: BATCHES_PER_ROUND }, makeBatch);
      const t0 = performance.now();
      for (const b of batches) await apply(b);
      const ms = (performance.now() - t0) / BATCHES_PER_ROUND;
      results[name]!.push(ms);
      console.error(`round ${round + 1} ${name}: ${ms.toFixed(1)} ms per ${BATCH}-change batch`);
    }
  }
  await sql.end();
  pg.kill();
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const perSec = (ms: number) => Math.round((BATCH * 1000) / ms);
  return {
    bench: "upsert-paths",
    batch: BATCH,
    storedRows: ROWS,
    unnestRowsPerSec: perSec(median(results.unnest!)),
    copyThenMergeRowsPerSec: perSec(median(results.copyThenMerge!)),
  };
}
