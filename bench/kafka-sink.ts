// The Kafka-mode sink as a user runs it: the daemon with its DEFAULT settings (only the broker, the
// database and the mapping configured), as a process of its own, reading a backlog of Debezium
// order events from the real broker (scripts/stack.sh; BENCH_BROKER=mock for librdkafka's mock
// cluster) and applying it to PostgreSQL. In the same run, the database's own ceiling: one unnest
// upsert per 5000 of the same final rows, into a table where every row already exists (every row
// takes the update branch), same columns and bookkeeping. Printed: events/s, the ratio to the
// ceiling, end-to-end latency p50/p99 at 5k events/s, the daemon's peak RSS.
//
// Cases: realistic (BENCH_EVENTS, default 100k and 1M: new ids, updates on recent orders, deletes
// with tombstones; see orders-stream.ts) and reuse (1M events over 100k keys, the old stream:
// coalescing hides most of the database work).
import { readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import postgres, { type Sql } from "postgres";
import { KafkaProducer, MockCluster } from "../src/kafka/index.ts";
import { numberArray, textArray } from "../src/sink/pgarray.ts";
import { onCleanup, tempDir } from "../test/support/cleanup.ts";
import { analyticsDb, ROOT, waitFor } from "../test/support/harness.ts";
import { freePort, startCluster } from "../test/support/pg.ts";
import { OrdersStream } from "./orders-stream.ts";
import { createTopics, stack } from "./stack.ts";

const PARTITIONS = 16;
const TOPIC = "ecom-connector.public.orders";

interface Broker {
  bootstrap: string;
  createTopic(name: string): Promise<void>;
}

function broker(): Broker {
  if (process.env.BENCH_BROKER === "mock") {
    const mock = new MockCluster(1);
    onCleanup(() => mock.close());
    return { bootstrap: mock.bootstrapServers, createTopic: async (t) => mock.createTopic(t, PARTITIONS) };
  }
  const s = stack();
  return { bootstrap: s.bootstrap, createTopic: (t) => createTopics(s.bootstrap, [t], PARTITIONS) };
}

/** user + system CPU seconds of a process */
const cpuSecs = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
};
/** busy and total jiffies of the whole machine (every core) */
const machine = () => {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + f[4]!;
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
};
const hwm = (pid: number) => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) * 1024;

async function histogram(port: number, name: string): Promise<Array<[number, number]>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return [...text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\d+)$`, "gm"))].map((m) => [m[1] === "+Inf" ? Infinity : Number(m[1]), Number(m[2])]);
}
const quantile = (before: Array<[number, number]>, after: Array<[number, number]>, q: number) => {
  const d = after.map(([le, c], i) => [le, c - (before[i]?.[1] ?? 0)] as const);
  const total = d[d.length - 1]![1];
  return d.find(([, c]) => c >= q * total)?.[0] ?? Infinity;
};

/** The ceiling: the same final rows upserted by the database itself, 5000 per transaction, every row an update. */
async function ceiling(sql: Sql, stream: OrdersStream): Promise<number> {
  await sql`CREATE TABLE fact_orders_ceiling (LIKE fact_orders INCLUDING ALL)`;
  const ids = [...stream.rows.keys()];
  const rows = ids.map((id) => stream.rows.get(id)!);
  const batches: unknown[][] = [];
  for (let from = 0; from < ids.length; from += 5000) {
    const n = Math.min(5000, ids.length - from);
    const at = (f: (i: number) => string) => textArray(n, (i) => f(from + i));
    batches.push([
      at((i) => String(ids[i])),
      at((i) => String(rows[i]!.customer_id)),
      at((i) => rows[i]!.status),
      at((i) => String(rows[i]!.cents / 100)),
      at(() => "EUR"),
      at((i) => rows[i]!.created_at),
      at((i) => rows[i]!.updated_at),
      numberArray(n, (i) => 40_000_000 + from + i),
      numberArray(n, (i) => 40_000_000 + from + i),
    ]);
  }
  const upsert = (pos: number) => `INSERT INTO fact_orders_ceiling AS t (id, customer_id, status, total_amount, currency, created_at, updated_at, _cdc_commit_lsn, _cdc_lsn, _cdc_synced_at)
SELECT u.id::bigint, u.c::bigint, u.s, u.a::numeric(12,2), u.cur, u.ca::timestamptz, u.ua::timestamptz, u.p + ${pos}, u.l + ${pos}, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::numeric[], $9::numeric[]) AS u(id, c, s, a, cur, ca, ua, p, l)
ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, total_amount = EXCLUDED.total_amount, currency = EXCLUDED.currency,
  created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, _cdc_commit_lsn = EXCLUDED._cdc_commit_lsn, _cdc_lsn = EXCLUDED._cdc_lsn, _cdc_synced_at = EXCLUDED._cdc_synced_at
WHERE (COALESCE(t._cdc_commit_lsn, -1), COALESCE(t._cdc_lsn, -1)) < (EXCLUDED._cdc_commit_lsn, EXCLUDED._cdc_lsn)`;
  for (const b of batches) await sql.begin((tx) => tx.unsafe(upsert(0), b as never[]));
  await sql`VACUUM ANALYZE fact_orders_ceiling`;
  const t0 = performance.now();
  for (const b of batches) await sql.begin((tx) => tx.unsafe(upsert(1_000_000), b as never[]));
  const secs = (performance.now() - t0) / 1000;
  await sql`DROP TABLE fact_orders_ceiling`;
  return secs;
}

async function runCase(name: string, b: Broker, events: number, shape: "realistic" | "reuse", withLatency: boolean) {
  // BENCH_STATEMENTS=1: print where the database's time went (pg_stat_statements)
  const statements = process.env.BENCH_STATEMENTS === "1";
  const pg = await startCluster(statements ? { settings: { shared_preload_libraries: "'pg_stat_statements'", "pg_stat_statements.track": "all" } } : {});
  onCleanup(() => pg.kill());
  const url = await pg.createDatabase("bench");
  const sql = await analyticsDb(url);
  const topic = `${TOPIC}.${name}.${process.pid}`;
  await b.createTopic(topic);
  const stream = new OrdersStream(shape, PARTITIONS);
  const producer = new KafkaProducer({ "bootstrap.servers": b.bootstrap, "linger.ms": 20, "batch.size": 1_000_000, "queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 2_000_000 });
  const tp = performance.now();
  let records = 0;
  for (let sent = 0; sent < events; sent += 20_000) {
    const msgs = stream.next(Math.min(20_000, events - sent));
    records += msgs.length;
    await producer.produce(topic, msgs);
  }
  const flushed = await producer.flush(300_000);
  if (flushed.failed.length) throw new Error(`${flushed.failed.length} messages not delivered`);
  console.error(`[${name}] produced ${events} events (${records} records with tombstones) in ${((performance.now() - tp) / 1000).toFixed(1)} s`);

  // the daemon with its defaults: broker, database, one mapping, an HTTP port to read its metrics
  const port = await freePort();
  const dir = tempDir("cdc-sink-bench-");
  const file = join(dir, "sink.toml");
  writeFileSync(file, `[kafka]\nbootstrap_servers = "${b.bootstrap}"\ngroup_id = "bench-${name}-${process.pid}"\n[postgres]\nurl = "${url}"\n[http]\nlisten = "127.0.0.1:${port}"\n[[mappings]]\ntopic = "${topic}"\ntable = "fact_orders"\n`);
  // BENCH_PROFILE=DIR: the daemon writes a CPU profile (markdown) there
  const profile = process.env.BENCH_PROFILE ? ["--cpu-prof-md", "--cpu-prof-dir", process.env.BENCH_PROFILE] : [];
  const proc = Bun.spawn([process.execPath, ...profile, `${ROOT}src/main.ts`, "run", "--config", file], { stdout: "ignore", stderr: "pipe" });
  onCleanup(() => proc.kill("SIGKILL"));
  const logs = new Response(proc.stderr).text();
  const applied = async () => Number((await sql`SELECT coalesce(sum(position), 0)::bigint AS n FROM cdc_sink.checkpoints`)[0]!.n);
  await waitFor("the daemon to start consuming", async () => (await applied()) > 0, 120_000).catch(async (e) => {
    proc.kill();
    throw new Error(`${(e as Error).message}\n${(await logs).slice(-2000)}`);
  });
  const t0 = performance.now();
  const cpu0 = cpuSecs(proc.pid);
  const m0 = machine();
  const first = await applied();
  while ((await applied()) < records) {
    if (proc.exitCode !== null) throw new Error(`the daemon exited: ${(await logs).slice(-2000)}`);
    if (performance.now() - t0 > 900_000) throw new Error("backlog not applied in 900 s");
    await Bun.sleep(20);
  }
  const secs = (performance.now() - t0) / 1000;
  const daemonCpu = cpuSecs(proc.pid) - cpu0;
  const m1 = machine();
  const machineBusy = (m1.busy - m0.busy) / (m1.total - m0.total);
  const eventsPerSec = Math.round((events * (records - first)) / records / secs);
  const peakRss = hwm(proc.pid);
  const [rows, cents] = stream.totals();
  const [got] = await sql`SELECT count(*)::int AS n, coalesce(sum(total_amount) * 100, 0)::bigint AS c FROM fact_orders`;
  if (got!.n !== rows || Number(got!.c) !== cents) throw new Error(`fact_orders has ${got!.n} rows summing to ${got!.c} cents, expected ${rows} and ${cents}`);
  const metricsText = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const batches = Number(/cdc_sink_batches_total (\d+)/.exec(metricsText)![1]);
  const applySecs = Number(/cdc_sink_apply_duration_seconds_sum (\S+)/.exec(metricsText)![1]);

  let p50: number | undefined;
  let p99: number | undefined;
  if (withLatency) {
    const before = await histogram(port, "cdc_sink_end_to_end_lag_seconds");
    let target = records;
    for (let tick = 0; tick < 100; tick++) {
      const msgs = stream.next(500);
      target += msgs.length;
      await producer.produce(topic, msgs);
      await Bun.sleep(100);
    }
    await producer.flush(30_000);
    await waitFor("latency stream applied", async () => (await applied()) >= target, 60_000);
    const after = await histogram(port, "cdc_sink_end_to_end_lag_seconds");
    p50 = quantile(before, after, 0.5) * 1000;
    p99 = quantile(before, after, 0.99) * 1000;
  }
  proc.kill("SIGTERM");
  await proc.exited;
  await producer.close();
  if (statements) {
    await sql`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`;
    for (const r of await sql`SELECT calls, round(total_exec_time)::int AS ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS q FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12`)
      console.error(`  ${String(r.ms).padStart(6)} ms ${String(r.calls).padStart(6)} calls ${String(r.rows).padStart(8)} rows  ${r.q}`);
  }

  const ceilingSecs = await ceiling(sql, stream);
  const ceilingPerSec = Math.round(events / ceilingSecs);
  const ratio = Math.round((eventsPerSec / ceilingPerSec) * 100) / 100;
  console.error(
    `[${name}] ${events} events -> ${rows} rows in ${secs.toFixed(2)} s: ${eventsPerSec} events/s (${batches} batches, ${applySecs.toFixed(2)} s in apply transactions, daemon CPU ${daemonCpu.toFixed(1)} s, machine ${Math.round(machineBusy * 100)}% busy on ${availableParallelism()} cores); database ceiling ${ceilingPerSec} events-equivalent/s (${ceilingSecs.toFixed(2)} s for the same rows): ${ratio}x` +
      (p50 !== undefined ? `; at 5k events/s p50 <= ${p50} ms, p99 <= ${p99} ms` : "") +
      `; daemon peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB`,
  );
  await sql.end();
  pg.kill();
  return { case: name, events, rows, eventsPerSec, ceilingPerSec, ratio, p50Ms: p50, p99Ms: p99, peakRssMiB: Math.round(peakRss / 2 ** 20), batches, applySecs: Math.round(applySecs * 100) / 100, daemonCpuSecs: daemonCpu, machineBusy: Math.round(machineBusy * 100) / 100 };
}

export async function run() {
  const b = broker();
  const sizes = process.env.BENCH_EVENTS ? [Number(process.env.BENCH_EVENTS)] : [100_000, 1_000_000];
  const results = [];
  for (const n of sizes) results.push(await runCase(`realistic-${n}`, b, n, "realistic", n === sizes[0]));
  if (!process.env.BENCH_EVENTS) results.push(await runCase("reuse-1000000", b, 1_000_000, "reuse", false));
  return { bench: "kafka-sink", broker: process.env.BENCH_BROKER === "mock" ? "mock" : "real", results };
}
