// 1M Debezium order events (70% c, 25% u, 5% d over 100k keys) from the mock cluster into
// PostgreSQL through the real pipeline; then latency at a steady produce rate; then a plain
// row-by-row upsert loop on the same machine for comparison. Batch limits are the daemon's defaults;
// BENCH_EVENTS and BENCH_BATCH (max_events) change the run.
import postgres from "postgres";
import { KafkaConsumer, KafkaProducer, MockCluster } from "../src/kafka/index.ts";
import { analyticsDb, config, sinkToml, startDaemon, TOPICS } from "../test/support/harness.ts";
import { startCluster } from "../test/support/pg.ts";

const N = Number(process.env.BENCH_EVENTS ?? 1_000_000);
const KEYS = 100_000;
const PARTITIONS = 128; // ~330-byte events: keeps each partition under the mock's 5 MiB cap

/** `state`: id -> total_amount in cents of the latest event, for checking what was applied. */
function makeEvents(n: number, state: Map<number, number>, lsn: { v: number }, rnd: () => number) {
  const keys: string[] = [];
  const values: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = rnd();
    const id = Math.floor(rnd() * KEYS);
    let op = r < 0.7 ? "c" : r < 0.95 ? "u" : "d";
    if (op !== "c" && !state.has(id)) op = "c";
    if (op === "c" && state.has(id)) op = "u";
    lsn.v += 100;
    const source = { ts_ms: Date.now(), snapshot: "false", lsn: lsn.v, sequence: `["${lsn.v - 50}","${lsn.v}"]`, db: "ecom", schema: "public", table: "orders", txId: i };
    keys.push(`{"id":${id}}`);
    if (op === "d") {
      state.delete(id);
      values.push(JSON.stringify({ before: { id }, after: null, source, op, ts_ms: Date.now() }));
    } else {
      state.set(id, i % 10000);
      values.push(JSON.stringify({ before: null, after: { id, customer_id: id % 977, status: "paid", total_amount: (i % 10000) / 100, currency: "EUR", created_at: "2024-03-01T10:00:00Z", updated_at: "2024-03-01T10:00:00Z" }, source, op, ts_ms: Date.now() }));
    }
  }
  return { keys, values };
}

function percentile(h: { buckets: readonly number[] }, counts: number[], total: number, q: number): number {
  let acc = 0;
  for (let i = 0; i < counts.length; i++) {
    acc += counts[i]!;
    if (acc >= q * total) return h.buckets[i]!;
  }
  return Infinity;
}

export async function run() {
  let seed = 42;
  // mulberry32: exact in 32-bit integer arithmetic
  const rnd = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pg = await startCluster();
  const url = await pg.createDatabase("bench");
  const sql = await analyticsDb(url);
  const mock = new MockCluster(1);
  mock.createTopic(TOPICS.orders, PARTITIONS);
  for (const t of [TOPICS.items, TOPICS.books, TOPICS.inventory]) mock.createTopic(t, 1);
  const producer = new KafkaProducer({ "bootstrap.servers": mock.bootstrapServers, "linger.ms": 5, "queue.buffering.max.messages": 1_000_000 });
  const state = new Map<number, number>();
  const lsn = { v: 1_000_000 };
  const tp = performance.now();
  for (let sent = 0; sent < N; sent += 50_000) {
    const { keys, values } = makeEvents(Math.min(50_000, N - sent), state, lsn, rnd);
    await producer.produce(TOPICS.orders, keys.map((k, i) => ({ key: k, value: values[i]! })));
  }
  await producer.flush(120_000);
  console.error(`produced ${N} events in ${((performance.now() - tp) / 1000).toFixed(1)} s`);
  const check = new KafkaConsumer({ "bootstrap.servers": mock.bootstrapServers, "group.id": "bench-check" });
  let kept = 0;
  for (let p = 0; p < PARTITIONS; p++) {
    const w = await check.watermarks(TOPICS.orders, p);
    kept += w.high - w.low;
  }
  await check.close();
  if (kept !== N) throw new Error(`the mock cluster kept ${kept} of ${N} events: use more partitions`);

  // throughput: the whole backlog
  const cfg = config(sinkToml({ bootstrap: mock.bootstrapServers, db: url, group: "bench", extra: process.env.BENCH_BATCH ? `[batch]\nmax_events = ${process.env.BENCH_BATCH}` : "" }).replace('"fetch.wait.max.ms" = 10', '"fetch.wait.max.ms" = 10\n"queued.max.messages.kbytes" = 65536'));
  const sink = await startDaemon(cfg);
  let t0 = 0;
  const deadline = Date.now() + 600_000;
  while (sink.metrics.eventsConsumed.value({ topic: TOPICS.orders }) < N || (await sql`SELECT coalesce(sum(position),0)::int AS n FROM cdc_sink.checkpoints`)[0]!.n < N) {
    if (Date.now() > deadline) throw new Error(`only ${sink.metrics.eventsConsumed.value({ topic: TOPICS.orders })} of ${N} events consumed in 600 s`);
    if (!t0 && sink.metrics.eventsConsumed.value({ topic: TOPICS.orders }) > 0) t0 = performance.now();
    await new Promise((r) => setTimeout(r, 20));
  }
  const secs = (performance.now() - t0) / 1000;
  const [{ rows, cents }] = (await sql`SELECT count(*)::int AS rows, (sum(total_amount) * 100)::int8::text AS cents FROM fact_orders`) as unknown as [{ rows: number; cents: string }];
  const expectCents = [...state.values()].reduce((a, b) => a + b, 0);
  if (rows !== state.size || Number(cents) !== expectCents) throw new Error(`fact_orders has ${rows} rows summing to ${cents} cents, expected ${state.size} rows summing to ${expectCents}`);
  const eventsPerSec = Math.round(N / secs);
  const applySecs = Number(/cdc_sink_apply_duration_seconds_sum (\S+)/.exec(sink.metrics.applyDuration.render())![1]);
  console.error(`applied ${N} events in ${secs.toFixed(2)} s = ${eventsPerSec} events/s (${rows} rows, ${sink.metrics.batches.value()} batches; ${applySecs.toFixed(2)} s in database transactions)`);

  // latency: produce at a steady 5k events/s for 6 s; end-to-end lag = analytics commit - produce time
  const hist = sink.metrics.endToEndLag;
  const countsBefore = hist.render();
  const rate = 5000;
  for (let s = 0; s < 60; s++) {
    const { keys, values } = makeEvents(rate / 10, state, lsn, rnd);
    await producer.produce(TOPICS.orders, keys.map((k, i) => ({ key: k, value: values[i]! })));
    await new Promise((r) => setTimeout(r, 100));
  }
  await producer.flush();
  await new Promise((r) => setTimeout(r, 500));
  await sink.stop();
  const parse = (text: string) => [...text.matchAll(/le="([^"]+)"\} (\d+)/g)].filter((m) => m[1] !== "+Inf").map((m) => Number(m[2]));
  const before = parse(countsBefore);
  const after = parse(hist.render());
  const cumulative = after.map((c, i) => c - (before[i] ?? 0));
  const perBucket = cumulative.map((c, i) => c - (i ? cumulative[i - 1]! : 0));
  const total = cumulative[cumulative.length - 1]!;
  const p50 = percentile(hist, perBucket, total, 0.5);
  const p99 = percentile(hist, perBucket, total, 0.99);
  console.error(`latency at ${rate} events/s: p50 <= ${p50 * 1000} ms, p99 <= ${p99 * 1000} ms (histogram bucket bounds)`);

  // baseline: one INSERT ... ON CONFLICT round trip per event, same table, 20k events
  const base = postgres(url, { max: 1, onnotice: () => {} });
  const M = 20_000;
  const tb = performance.now();
  for (let i = 0; i < M; i++) {
    const id = Math.floor(rnd() * KEYS);
    await base`INSERT INTO fact_orders (id, customer_id, status, total_amount) VALUES (${id}, ${i}, 'paid', ${i / 100})
      ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, total_amount = EXCLUDED.total_amount`;
  }
  const rowByRow = Math.round(M / ((performance.now() - tb) / 1000));
  console.error(`row-by-row upsert loop: ${rowByRow} events/s`);
  await base.end();
  await sql.end();
  await producer.close();
  mock.close();
  pg.kill();
  return { bench: "kafka-sink", events: N, eventsPerSec, latencyAt: `${rate} events/s`, p50Ms: p50 * 1000, p99Ms: p99 * 1000, rowByRowEventsPerSec: rowByRow, speedup: Math.round((eventsPerSec / rowByRow) * 10) / 10 };
}
