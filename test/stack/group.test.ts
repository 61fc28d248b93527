// Two cdc-sink instances in one consumer group on the real broker while Debezium streams a busy
// source: one stopped with SIGTERM and restarted, then the other killed with kill -9 and restarted
// (four rebalances). The final tables equal the source, and no row's position ever goes back
// (sampled while it runs), so no change was applied out of order.
// STACK_GROUP_PROTOCOL=consumer runs it with KIP-848's group protocol (default: classic).
import { expect } from "bun:test";
import { KafkaConsumer } from "../../src/kafka/index.ts";
import {
  connect,
  converge,
  createDatabase,
  dropDatabase,
  registerVariant,
  type Sink,
  sinkConfig,
  sleep,
  stackEnv,
  stackTest,
  startOrderWriter,
  startSink,
  TARGET,
  uniqueName,
  type Variant,
  watchPositions,
} from "./support.ts";

const protocol = process.env.STACK_GROUP_PROTOCOL ?? "classic";
const PARTITIONS = 4;

stackTest(`two instances in one consumer group (${protocol} protocol), one stopped and restarted, one killed -9 and restarted: source = analytics, nothing out of order`, async () => {
  const env = stackEnv();
  const name = uniqueName("grp");
  const srcUrl = await createDatabase(env.ECOM_DB_URL, name, ["sql/ecom-ddl.sql", "sql/sample-data.sql"]);
  const dbUrl = await createDatabase(env.ANALYTICS_DB_URL, name, ["sql/analytics-ddl.sql"]);
  const src = connect(srcUrl);
  const an = connect(dbUrl);
  const sinks: Sink[] = [];
  const timeline: string[] = [];
  const t0 = performance.now();
  const mark = (what: string) => timeline.push(`${((performance.now() - t0) / 1000).toFixed(1)} s ${what}`);
  let variant: Variant | undefined;
  let writer: ReturnType<typeof startOrderWriter> | undefined;
  let watcher: ReturnType<typeof watchPositions> | undefined;
  try {
    // a few hundred rows for the snapshot, then a writer that keeps going through everything below
    await src`INSERT INTO orders (customer_id, status, total_amount) SELECT g, 'paid', g FROM generate_series(1, 200) g`;
    await src`INSERT INTO order_items (order_id, book_id, quantity, unit_price) SELECT o.id, 1 + o.id % 4, 1, 9.99 FROM orders o WHERE o.customer_id BETWEEN 1 AND 200`;
    const bookIds = (await src`SELECT id FROM books`).map((r) => Number(r.id));
    writer = startOrderWriter(srcUrl, { bookIds, txPerSec: 60 });
    // topics of 4 partitions each, created by Connect (topic.creation.*) before the first record
    variant = await registerVariant(env, "ecom", name, name, { "topic.creation.default.partitions": String(PARTITIONS), "topic.creation.default.replication.factor": "1" });
    mark("connector RUNNING");
    const mappings = (["orders", "order_items", "books"] as const).map((t) => ({ topic: `${variant!.prefix}.public.${t}`, table: TARGET[t]! }));
    // (under KIP-848 the broker owns session and heartbeat timing: librdkafka refuses them)
    const properties = protocol === "classic" ? {} : { "group.protocol": protocol, "session.timeout.ms": undefined, "heartbeat.interval.ms": undefined };
    const config = sinkConfig({ bootstrap: env.BOOTSTRAP_SERVERS, db: dbUrl, group: name, mappings, properties });
    const start = async (label: string) => {
      const s = await startSink(config, label);
      sinks.push(s);
      await s.ready();
      mark(`${label} ready`);
      return s;
    };
    watcher = watchPositions(dbUrl, [{ table: "fact_orders", key: "id" }, { table: "fact_order_items", key: "id" }]);
    let a = await start("A");
    let b = await start("B");
    const meta = new KafkaConsumer({ "bootstrap.servers": env.BOOTSTRAP_SERVERS, "group.id": uniqueName("meta") });
    const topics = await meta.listTopics().finally(() => meta.close());
    expect(topics.find((t) => t.topic === mappings[0]!.topic)?.partitions).toBe(PARTITIONS);
    await sleep(3000);

    expect(await a.term()).toBe(0);
    mark("A stopped (SIGTERM, exit 0)");
    await sleep(2000);
    a = await start("A again");
    await sleep(3000);

    await b.kill9();
    mark("B killed (SIGKILL)");
    await sleep(1000);
    b = await start("B again");
    await sleep(3000);

    const written = await writer.stop();
    writer = undefined;
    mark(`writer stopped: ${written.transactions} transactions (${written.inserted} orders inserted, ${written.updated} updated, ${written.deleted} deleted)`);
    expect(written.transactions).toBeGreaterThan(300);
    const ms = await converge(src, an, ["orders", "order_items", "books"], 90_000);
    mark(`analytics equals the source ${(ms / 1000).toFixed(1)} s after the last write`);
    const watched = await watcher.stop();
    watcher = undefined;
    mark(`positions sampled ${watched.samples} times over ${watched.rows} rows: ${watched.violations.length} went back`);
    expect(watched.violations).toEqual([]);
    expect(watched.samples).toBeGreaterThan(50);
    expect((await an`SELECT count(*)::int AS n FROM cdc_sink.dead_letters`)[0]!.n).toBe(0);
    // both instances of the end held partitions and applied rows
    for (const s of [a, b]) expect(s.log(1000)).toContain("partitions assigned");
  } finally {
    await writer?.stop();
    await watcher?.stop();
    const codes = await Promise.all(sinks.filter((s) => s.label.endsWith("again")).map((s) => s.term()));
    for (const s of sinks) await s.kill9(); // (any still running after a failure)
    await variant?.delete();
    await Promise.all([src.end(), an.end()]);
    await Promise.all([dropDatabase(srcUrl), dropDatabase(dbUrl)]);
    console.log(timeline.join("\n"));
    expect(codes).toEqual([0, 0]);
  }
}, 240_000);
