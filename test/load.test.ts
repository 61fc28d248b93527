// The snapshot's row-by-row fallback (BulkLoader.loadRows) against a real PostgreSQL: bounded by
// bytes as a batch is, and an input that fails half-way fails the load instead of hanging it.
import { expect, test } from "bun:test";
import { PassThrough } from "node:stream";
import postgres from "postgres";
import { silentLogger } from "../src/log.ts";
import { createMetrics } from "../src/metrics.ts";
import { createBulkLoader } from "../src/sink/load.ts";
import { openReader } from "../src/sources/postgres/snapshot.ts";
import { ensureStateTables } from "../src/sink/state.ts";
import { loadTargets } from "../src/sink/targets.ts";
import { analyticsDb, config, sinkToml } from "./support/harness.ts";
import { sharedCluster } from "./support/pg.ts";

async function setup() {
  const pg = await sharedCluster();
  const url = await pg.createDatabase("load");
  const sql = await analyticsDb(url);
  const cfg = config(sinkToml({ bootstrap: "127.0.0.1:9", db: url, group: "g" }));
  await ensureStateTables(sql, cfg.postgres.state_schema);
  const orders = (await loadTargets(sql, cfg.mappings)).find((t) => t.table.name === "fact_orders")!;
  const columns = [...orders.columns.keys()];
  // a COPY text row as the snapshot reads it: the columns, then '0', the snapshot LSN and a time
  const row = (id: number, status: string) =>
    `${columns.map((c) => (c === "id" ? String(id) : c === "status" ? status : c === "total_amount" ? "1.50" : "\\N")).join("\t")}\t0\t1000\t2026-11-30 20:00:00+00\n`;
  return { sql, orders, columns, row };
}

const coord = { stream: "pg:slot", part: "ecom#snapshot", position: 1000n };

test("loadRows applies every row in batches bounded by bytes; a rejected row is a dead letter with its key under <source>#snapshot", async () => {
  const { sql, orders, columns, row } = await setup();
  const loader = createBulkLoader(sql, "cdc_sink", { log: silentLogger, metrics: createMetrics(), maxBatchBytes: 4096 });
  await sql`ALTER TABLE fact_orders ADD CONSTRAINT short_status CHECK (length(status) < 40)`;
  const input = new PassThrough();
  for (let i = 1; i <= 300; i++) input.write(row(i, i === 150 ? "x".repeat(50) : `status-${"s".repeat(20)}`));
  input.end();
  const r = await loader.loadRows(orders, columns, input, coord);
  expect(r).toEqual({ applied: 299, deadLetters: 1 });
  expect((await sql`SELECT count(*)::int AS n FROM fact_orders`)[0]!.n).toBe(299);
  const [d] = await sql`SELECT part, key FROM cdc_sink.dead_letters`;
  expect([d!.part, d!.key]).toEqual(["ecom#snapshot", '["150"]']);
  // rows of ~80 bytes against 4 KiB: many transactions (each its own now()), never the 300 rows at once
  const [{ n }] = (await sql`SELECT count(DISTINCT _cdc_synced_at)::int AS n FROM fact_orders`) as unknown as [{ n: number }];
  expect(n).toBeGreaterThan(3);
  await sql.end();
}, 60_000);

test("an input that fails half-way fails loadRows with its error (the snapshot retries), never hangs it", async () => {
  const { sql, orders, columns, row } = await setup();
  const loader = createBulkLoader(sql, "cdc_sink", { log: silentLogger });
  const input = new PassThrough();
  input.write(row(1, "paid"));
  input.write(row(2, "paid"));
  setTimeout(() => input.destroy(new Error("connection lost mid-COPY")), 100);
  await expect(loader.loadRows(orders, columns, input, coord)).rejects.toThrow("connection lost mid-COPY");
  await sql.end();
}, 30_000);

test("a snapshot reader whose COPY nobody reads any more still ends (the fallback failed half-way): no COMMIT waits behind it", async () => {
  const pg = await sharedCluster();
  const url = await pg.createDatabase("reader");
  const src = postgres(url, { max: 1, onnotice: () => {} });
  // far more than the socket buffers hold: the server is left blocked mid-COPY
  await src`CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 200000) g`;
  const exporter = postgres(url, { max: 1 });
  const reader = await exporter.begin(async (tx) => {
    await tx.unsafe("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
    const [{ name }] = (await tx`SELECT pg_export_snapshot() AS name`) as unknown as [{ name: string }];
    const cfg = config(`[source]\nkind = "postgres"\n[postgres]\nurl = "${url}"\n[[postgres_sources]]\nname = "s"\nurl = "${url}"\n[[mappings]]\nsource = "s"\nsource_table = "public.big"\ntable = "big"\n`).postgres_sources[0]!;
    return openReader(cfg, name);
  });
  const copy = await reader.tx.unsafe("COPY big TO STDOUT").readable();
  let copyError: unknown;
  copy.on("error", (e) => (copyError = e));
  await new Promise((r) => copy.once("data", r));
  copy.pause();
  const ended = await Promise.race([reader.end().then(() => "ended"), new Promise((r) => setTimeout(() => r("hung"), 10_000))]);
  expect(ended).toBe("ended");
  expect(String(copyError)).toContain("CONNECTION_DESTROYED");
  await exporter.end();
  await src.end();
}, 30_000);
