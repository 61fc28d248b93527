// PostgreSQL source: end-to-end latency (source commit -> analytics commit) at 1k and 10k
// changes/s, then the sustained ceiling on a backlog of streamed changes.
import { readFileSync } from "node:fs";
import postgres from "postgres";
import { analyticsDb, config, ROOT, startDaemon } from "../test/support/harness.ts";
import { startCluster } from "../test/support/pg.ts";

const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 300_000);

function quantiles(hist: { buckets: readonly number[]; render(): string }, before: string) {
  const parse = (t: string) => [...t.matchAll(/le="([^"]+)"\} (\d+)/g)].filter((m) => m[1] !== "+Inf").map((m) => Number(m[2]));
  const a = parse(before);
  const cum = parse(hist.render()).map((c, i) => c - (a[i] ?? 0));
  const total = cum[cum.length - 1]!;
  const q = (p: number) => hist.buckets[cum.findIndex((c) => c >= p * total)]! * 1000;
  return { p50Ms: q(0.5), p99Ms: q(0.99), samples: total };
}

export async function run() {
  // synchronous_commit=off (the test clusters' setting) holds WAL back from the walsender for up
  // to wal_writer_delay (200 ms): measure with the default, as production runs
  const pg = await startCluster({ settings: { synchronous_commit: "on" } });
  const ecomUrl = await pg.createDatabase("ecom");
  const ecom = postgres(ecomUrl, { max: 2, onnotice: () => {} });
  await ecom.unsafe(readFileSync(`${ROOT}sql/ecom-ddl.sql`, "utf8"));
  const analyticsUrl = await pg.createDatabase("analytics");
  const analytics = await analyticsDb(analyticsUrl);
  const cfg = config(`
[source]
kind = "postgres"
[postgres]
url = "${analyticsUrl}"
[[postgres_sources]]
name = "ecom"
url = "${ecomUrl}"
[[mappings]]
source = "ecom"
source_table = "public.orders"
table = "fact_orders"
`);
  let sink = await startDaemon(cfg);
  const results: Record<string, unknown> = {};
  for (const rate of [1000, 10_000]) {
    const before = sink.metrics.endToEndLag.render();
    const tickMs = 20;
    const perTick = (rate * tickMs) / 1000;
    const end = Date.now() + 5000;
    let next = Date.now();
    while (Date.now() < end) {
      await ecom`INSERT INTO orders (customer_id, status, total_amount) SELECT g, 'paid', g % 100 FROM generate_series(1, ${perTick}) g`;
      next += tickMs;
      const wait = next - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    await new Promise((r) => setTimeout(r, 1000));
    const q = quantiles(sink.metrics.endToEndLag, before);
    results[`at${rate}`] = q;
    console.error(`${rate} changes/s: p50 <= ${q.p50Ms} ms, p99 <= ${q.p99Ms} ms (${q.samples} changes; histogram bucket bounds)`);
  }
  await sink.stop();

  // ceiling: a backlog of inserts and updates written while the sink is stopped, then drained
  const [{ max: startId }] = (await ecom`SELECT coalesce(max(id), 0)::int AS max FROM orders`) as unknown as [{ max: number }];
  // the database's own rate: how long the source took to commit the same changes
  const w0 = performance.now();
  for (let done = 0; done < BACKLOG; done += 10_000)
    await ecom`INSERT INTO orders (customer_id, status, total_amount) SELECT g, 'pending', g % 100 FROM generate_series(1, 10000) g`;
  await ecom`UPDATE orders SET status = 'paid' WHERE id > ${startId} AND id % 2 = 0`;
  const writeSecs = (performance.now() - w0) / 1000;
  const changes = BACKLOG + BACKLOG / 2;
  const [{ n: want }] = (await ecom`SELECT count(*)::int AS n FROM orders WHERE status = 'paid'`) as unknown as [{ n: number }];
  const t0 = performance.now();
  sink = await startDaemon(cfg);
  while ((await analytics`SELECT count(*)::int AS n FROM fact_orders WHERE status = 'paid'`)[0]!.n < want) await new Promise((r) => setTimeout(r, 50));
  const secs = (performance.now() - t0) / 1000;
  await sink.stop();
  const ceiling = Math.round(changes / secs);
  const ratio = Math.round((writeSecs / secs) * 100) / 100;
  console.error(`backlog of ${changes} changes applied in ${secs.toFixed(2)} s = ${ceiling} changes/s; the source committed them in ${writeSecs.toFixed(2)} s: the sink replicates at ${ratio}x the source's write rate`);
  await ecom.end();
  await analytics.end();
  pg.kill();
  return { bench: "pg-source", latency1k: results.at1000, latency10k: results.at10000, backlogChanges: changes, changesPerSec: ceiling, sourceWriteSecs: writeSecs, ratio };
}
