// verify on a 1M-row table (PostgreSQL source, the daemon streaming, a light write load going on):
// with no differences, with 100 differences planted in analytics, then repair of those, and the
// same 100 differences found on an idle source (where confirming waits for the slot's next status).
// Starts and stops its own cluster.
import { readFileSync } from "node:fs";
import postgres, { type Sql } from "postgres";
import { runRepair, runVerify } from "../src/verify/index.ts";
import { cleanupAll } from "../test/support/cleanup.ts";
import { analyticsDb, config, ROOT, startDaemon } from "../test/support/harness.ts";
import { startCluster } from "../test/support/pg.ts";

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const ORDERS = (extra = "") => `SELECT g, g % 5000, (ARRAY['paid', 'shipped', 'pending'])[1 + g % 3], (g % 100000) / 100.0, 'EUR',
  timestamptz '2024-01-01 00:00:00+00' + g * interval '1 s', timestamptz '2024-06-01 00:00:00+00' + g * interval '1 ms'${extra} FROM generate_series(1, ${ROWS}) g`;

/** What verify reads from a database: rows returned and fetched, statements, from pg_stat_database. */
async function dbStats(sql: Sql) {
  const [r] = await sql`SELECT tup_returned::float8 AS returned, tup_fetched::float8 AS fetched, xact_commit::float8 AS xacts, blks_hit::float8 + blks_read::float8 AS blocks FROM pg_stat_database WHERE datname = current_database()`;
  return r as unknown as { returned: number; fetched: number; xacts: number; blocks: number };
}

async function plant(analytics: Sql): Promise<void> {
  // 100 differences spread over the table: 40 changed, 30 deleted, 30 added
  const step = Math.floor(ROWS / 100);
  const ids = Array.from({ length: 70 }, (_, i) => 7 + i * step);
  await analytics`UPDATE fact_orders SET total_amount = total_amount + 1 WHERE id = ANY(${ids.slice(0, 40)})`;
  await analytics`DELETE FROM fact_orders WHERE id = ANY(${ids.slice(40)})`;
  await analytics`INSERT INTO fact_orders (id, customer_id, status) SELECT 2000000000 + g, 1, 'paid' FROM generate_series(1, 30) g`;
}

export async function run() {
  const pg = await startCluster();
  const ecomUrl = await pg.createDatabase("ecom");
  const ecom = postgres(ecomUrl, { max: 2, onnotice: () => {} });
  await ecom.unsafe(readFileSync(`${ROOT}sql/ecom-ddl.sql`, "utf8"));
  const analyticsUrl = await pg.createDatabase("analytics");
  const analytics = await analyticsDb(analyticsUrl);
  const t0 = performance.now();
  await Promise.all([
    ecom.unsafe(`INSERT INTO orders (id, customer_id, status, total_amount, currency, created_at, updated_at) ${ORDERS()}`),
    analytics.unsafe(`INSERT INTO fact_orders (id, customer_id, status, total_amount, currency, created_at, updated_at, _cdc_commit_lsn, _cdc_lsn, _cdc_synced_at) ${ORDERS(", 0, 1, now()")}`),
  ]);
  await ecom`SELECT setval('orders_id_seq', ${ROWS})`;
  await Promise.all([ecom`VACUUM ANALYZE orders`, analytics`VACUUM ANALYZE fact_orders`]);
  console.error(`loaded ${ROWS} rows on each side in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const cfg = config(`
[source]
kind = "postgres"
[postgres]
url = "${analyticsUrl}"
[verify]
rows_per_second = 100000000
chunk_rows = 10000
[[postgres_sources]]
name = "ecom"
url = "${ecomUrl}"
snapshot = false
[[mappings]]
source = "ecom"
source_table = "public.orders"
table = "fact_orders"
`);
  const sink = await startDaemon(cfg);
  // the slot is created at start (no snapshot): writes before it exists would never reach analytics
  while (!(await ecom`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'cdc_sink_ecom' AND active`).length) await new Promise((r) => setTimeout(r, 50));
  // streaming continues: about 100 changes a second (new orders, then their updates)
  let stop = false;
  let writes = 0;
  const writer = (async () => {
    while (!stop) {
      const [o] = await ecom`INSERT INTO orders (customer_id, status, total_amount) VALUES (1, 'pending', 1) RETURNING id`;
      await ecom`UPDATE orders SET status = 'paid' WHERE id = ${o!.id}`;
      writes += 2;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await new Promise((r) => setTimeout(r, 1000));

  const results: Record<string, unknown> = { rows: ROWS };
  const measure = async (name: string, fn: (print: (l: string) => void) => Promise<number>) => {
    const lines: string[] = [];
    const [s0, a0] = await Promise.all([dbStats(ecom), dbStats(analytics)]);
    const start = performance.now();
    const code = await fn((l) => lines.push(l));
    const seconds = (performance.now() - start) / 1000;
    await new Promise((r) => setTimeout(r, 600)); // statistics are reported by backends with a delay
    const [s1, a1] = await Promise.all([dbStats(ecom), dbStats(analytics)]);
    const cost = (a: typeof s0, b: typeof s0) => ({ rowsRead: Math.round(b.returned - a.returned + b.fetched - a.fetched), blocks: Math.round(b.blocks - a.blocks), statements: Math.round(b.xacts - a.xacts) });
    results[name] = { seconds: Number(seconds.toFixed(2)), exit: code, source: cost(s0, s1), analytics: cost(a0, a1) };
    console.error(`${name}: ${seconds.toFixed(2)} s, exit ${code}`);
    for (const l of lines) console.error(`  ${l}`);
    return code;
  };
  try {
    await measure("equal", (print) => runVerify(cfg, { print }));
    await plant(analytics);
    await measure("differences100", (print) => runVerify(cfg, { print, limit: 5 }));
    await measure("repair100", (print) => runRepair(cfg, { print, limit: 5 }));
    await measure("afterRepair", (print) => runVerify(cfg, { print }));
    stop = true;
    await writer;
    await new Promise((r) => setTimeout(r, 1000));
    await plant(analytics);
    await measure("differences100IdleSource", (print) => runVerify(cfg, { print, limit: 5 }));
  } finally {
    stop = true;
    await writer;
    await sink.stop();
    await Promise.all([ecom.end(), analytics.end()]);
    pg.kill();
    cleanupAll();
  }
  results.writesDuringBench = writes;
  return results;
}
