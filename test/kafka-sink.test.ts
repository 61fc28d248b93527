// Kafka mode end to end: Debezium events on librdkafka's mock cluster -> real PostgreSQL.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Sql } from "postgres";
import { KafkaProducer, MockCluster } from "../src/kafka/index.ts";
import { envelope, keyOf, newClock, withSchema } from "./support/debezium.ts";
import { analyticsDb, config, sinkToml, startDaemon, TOPICS, waitFor } from "./support/harness.ts";
import { sharedCluster } from "./support/pg.ts";

let mock: MockCluster;
let producer: KafkaProducer;
let seq = 0;

beforeAll(() => {
  mock = new MockCluster(1);
  producer = new KafkaProducer({ "bootstrap.servers": mock.bootstrapServers, "linger.ms": 1 });
});
afterAll(async () => {
  await producer.close();
  mock.close();
});

/** A fresh analytics database and topic namespace per test. */
async function setup(extra?: string, mappingsExtra?: Parameters<typeof sinkToml>[0]["mappingsExtra"], opts: { absent?: Array<keyof typeof TOPICS> } = {}) {
  const pg = await sharedCluster();
  const url = await pg.createDatabase("sink");
  const sql = await analyticsDb(url);
  const n = ++seq;
  const topics = Object.fromEntries(Object.entries(TOPICS).map(([k, t]) => [k, `${t}.${n}`])) as typeof TOPICS;
  for (const [k, t] of Object.entries(topics)) if (!opts.absent?.includes(k as keyof typeof TOPICS)) mock.createTopic(t, 2);
  /** the config for this test's topics, consumed by `group` */
  const tomlFor = (group: string) => {
    let toml = sinkToml({ bootstrap: mock.bootstrapServers, db: url, group, extra, mappingsExtra });
    for (const [k, t] of Object.entries(TOPICS)) toml = toml.replace(`"${t}"`, `"${topics[k as keyof typeof TOPICS]}"`);
    return toml;
  };
  return { sql, url, topics, tomlFor, cfg: config(tomlFor(`g${n}`)) };
}

async function send(topic: string, msgs: Array<{ key: string | Uint8Array | null; value: unknown }>, partition?: number) {
  await producer.produce(
    topic,
    msgs.map((m) => ({ key: m.key, partition, value: m.value === null || typeof m.value === "string" || m.value instanceof Uint8Array ? m.value : JSON.stringify(m.value) })),
  );
  const r = await producer.flush(10_000);
  expect(r.failed).toEqual([]);
}

const rows = (sql: Sql, q: string): Promise<Record<string, unknown>[]> => sql.unsafe(q).then((r) => r.map((x) => ({ ...x })));

test("every op reaches all four tables, schemaless and with schema", async () => {
  const { sql, topics, cfg } = await setup();
  const clock = newClock();
  const order = (id: number, status: string, total: number) => ({
    id,
    customer_id: 7,
    status,
    total_amount: total,
    currency: "EUR",
    created_at: "2024-03-01T10:00:00.123456Z",
    updated_at: "2024-03-01T10:00:00Z",
  });
  await send(topics.orders, [
    { key: keyOf(1), value: envelope(clock, "orders", "r", { after: order(1, "paid", 10.5) }) },
    { key: keyOf(2), value: envelope(clock, "orders", "c", { after: order(2, "pending", 20) }) },
    { key: keyOf(2), value: envelope(clock, "orders", "u", { after: order(2, "paid", 21.25) }) },
    { key: keyOf(3), value: envelope(clock, "orders", "c", { after: order(3, "paid", 5) }) },
    { key: keyOf(3), value: envelope(clock, "orders", "d", { before: { id: 3, customer_id: 0, status: "", total_amount: 0 } }) },
    { key: keyOf(3), value: null },
  ]);
  // with schema: semantic types decide (Date days, MicroTimestamp, Decimal bytes)
  const bookFields = {
    id: { type: "int64" },
    isbn: { type: "string" },
    title: { type: "string" },
    author: { type: "string" },
    price: { type: "bytes", name: "org.apache.kafka.connect.data.Decimal", parameters: { scale: "2" } },
    published_on: { type: "int32", name: "io.debezium.time.Date" },
    tags: { type: "array" },
    attributes: { type: "string", name: "io.debezium.data.Json" },
    created_at: { type: "string", name: "io.debezium.time.ZonedTimestamp" },
  };
  const book = { id: 9, isbn: "978-0", title: "Dune", author: "Herbert", price: "B9A=", published_on: 19723, tags: ["sf", "classic"], attributes: '{"pages": 412}', created_at: "2024-01-01T00:00:00Z" };
  await send(topics.books, [
    { key: keyOf(9, "id", true), value: withSchema(envelope(clock, "books", "c", { after: book }), bookFields) },
    { key: keyOf(9, "id", true), value: withSchema(envelope(clock, "books", "u", { after: { ...book, title: "Dune (2nd ed.)" } }), bookFields) },
  ]);
  await send(topics.items, [
    { key: keyOf(100), value: envelope(clock, "order_items", "c", { after: { id: 100, order_id: 2, book_id: 9, quantity: 3, unit_price: 7.08, created_at: "2024-03-01T10:00:01Z" } }) },
    { key: keyOf(101), value: envelope(clock, "order_items", "c", { after: { id: 101, order_id: 2, book_id: 9, quantity: 1, unit_price: 0 } }) },
    { key: keyOf(101), value: envelope(clock, "order_items", "d", { before: { id: 101 } }) },
  ]);
  await send(topics.inventory, [
    { key: keyOf(9, "book_id"), value: envelope(clock, "inventory", "c", { after: { book_id: 9, quantity: 10, reserved: 0, warehouse: "main", updated_at: "2024-03-01T10:00:00Z" } }, { db: "inventory" }) },
    { key: keyOf(9, "book_id"), value: envelope(clock, "inventory", "u", { after: { book_id: 9, quantity: 7, reserved: 3, warehouse: "main", updated_at: "2024-03-01T11:00:00Z" } }, { db: "inventory" }) },
  ]);
  const run = await startDaemon(cfg);
  try {
    await waitFor("inventory update", async () => (await sql`SELECT quantity FROM fact_inventory WHERE book_id = 9`)[0]?.quantity === 7);
    await waitFor("all topics", async () => (await sql`SELECT count(*)::int AS n FROM fact_order_items`)[0]!.n === 1 && (await sql`SELECT title FROM dim_books`)[0]?.title === "Dune (2nd ed.)");
    await waitFor("orders", async () => (await sql`SELECT count(*)::int AS n FROM fact_orders`)[0]!.n === 2);
  } finally {
    await run.stop();
  }
  expect(await rows(sql, "SELECT id, status, total_amount::text, created_at = '2024-03-01T10:00:00.123456Z'::timestamptz AS ts_ok FROM fact_orders ORDER BY id")).toEqual([
    { id: "1", status: "paid", total_amount: "10.50", ts_ok: true },
    { id: "2", status: "paid", total_amount: "21.25", ts_ok: true },
  ]);
  expect(await rows(sql, "SELECT id, price::text, published_on::text, tags, attributes, title FROM dim_books")).toEqual([
    { id: "9", price: "20.00", published_on: "2024-01-01", tags: ["sf", "classic"], attributes: { pages: 412 }, title: "Dune (2nd ed.)" },
  ]);
  expect(await rows(sql, "SELECT id, quantity, unit_price::text FROM fact_order_items")).toEqual([{ id: "100", quantity: 3, unit_price: "7.08" }]);
  expect(await rows(sql, "SELECT book_id, quantity, reserved FROM fact_inventory")).toEqual([{ book_id: "9", quantity: 7, reserved: 3 }]);
  expect(await rows(sql, "SELECT count(*)::int AS n FROM cdc_sink.dead_letters")).toEqual([{ n: 0 }]);
  await sql.end();
}, 120_000);

test("a topic created after the daemon subscribed is consumed within seconds, not at librdkafka's 5-minute metadata refresh", async () => {
  // Debezium creates a table's topic with its first record: a sink started first subscribes to a topic that is not there yet
  const { sql, topics, cfg } = await setup(undefined, undefined, { absent: ["books"] });
  const clock = newClock();
  const run = await startDaemon(cfg);
  try {
    await send(topics.orders, [{ key: keyOf(1), value: envelope(clock, "orders", "c", { after: { id: 1, customer_id: 7, status: "paid", total_amount: 3, currency: "EUR" } }) }]);
    await waitFor("orders", async () => (await sql`SELECT count(*)::int AS n FROM fact_orders`)[0]!.n === 1);
    mock.createTopic(topics.books, 2);
    await send(topics.books, [{ key: keyOf(9), value: envelope(clock, "books", "c", { after: { id: 9, isbn: "978-0", title: "Dune", author: "Herbert", price: 20 } }) }]);
    await waitFor("the late topic's record", async () => (await sql`SELECT title FROM dim_books`)[0]?.title === "Dune", 40_000);
  } finally {
    await run.stop();
    await sql.end();
  }
}, 60_000);

test("an unchanged-TOAST placeholder keeps the stored value", async () => {
  const { sql, topics, cfg } = await setup();
  const clock = newClock();
  const book = { id: 1, isbn: "x", title: "T", author: "A", price: 9.99, attributes: '{"long": "text"}', tags: ["a"] };
  await send(topics.books, [
    { key: keyOf(1), value: envelope(clock, "books", "c", { after: book }) },
    { key: keyOf(1), value: envelope(clock, "books", "u", { after: { ...book, price: 12.5, attributes: "__debezium_unavailable_value", tags: ["__debezium_unavailable_value"] } }) },
  ]);
  const run = await startDaemon(cfg);
  try {
    await waitFor("update", async () => (await sql`SELECT price::text FROM dim_books WHERE id = 1`)[0]?.price === "12.50");
  } finally {
    await run.stop();
  }
  expect(await rows(sql, "SELECT attributes, tags FROM dim_books")).toEqual([{ attributes: { long: "text" }, tags: ["a"] }]);
  // and across batches: a second run applies a TOAST update on its own
  await send(topics.books, [{ key: keyOf(1), value: envelope(clock, "books", "u", { after: { ...book, title: "T2", attributes: "__debezium_unavailable_value" } }) }]);
  const run2 = await startDaemon(cfg);
  try {
    await waitFor("second update", async () => (await sql`SELECT title FROM dim_books WHERE id = 1`)[0]?.title === "T2");
  } finally {
    await run2.stop();
  }
  expect(await rows(sql, "SELECT attributes FROM dim_books")).toEqual([{ attributes: { long: "text" } }]);
  await sql.end();
}, 120_000);

test("an update without its unchanged-TOAST NOT NULL column updates the stored row; for a row not stored it is a dead letter saying why", async () => {
  const { sql, topics, cfg } = await setup();
  await sql`ALTER TABLE dim_books ALTER COLUMN tags SET NOT NULL, ALTER COLUMN isbn SET NOT NULL`;
  const clock = newClock();
  const big = Array.from({ length: 50 }, (_, i) => `tag-${i}-${"x".repeat(200)}`);
  const book = (id: number) => ({ id, isbn: `isbn-${id}`, title: "T", author: "A", price: 9.99, tags: big });
  await send(topics.books, [
    { key: keyOf(1), value: envelope(clock, "books", "c", { after: book(1) }) },
    { key: keyOf(2), value: envelope(clock, "books", "c", { after: { ...book(2), tags: ["small"] } }) },
  ]);
  const run = await startDaemon(cfg);
  try {
    await waitFor("books", async () => (await sql`SELECT count(*)::int AS n FROM dim_books`)[0]!.n === 2);
    // updates in their own batches: nothing pending to merge with, so each must update the stored row
    await send(topics.books, [{ key: keyOf(1), value: envelope(clock, "books", "u", { after: { ...book(1), title: "T2", tags: ["__debezium_unavailable_value"] } }) }]);
    await waitFor("update 1", async () => (await sql`SELECT title FROM dim_books WHERE id = 1`)[0]?.title === "T2");
    await send(topics.books, [
      // a key never stored: its NOT NULL tags are unknown, so it cannot be inserted
      { key: keyOf(3), value: envelope(clock, "books", "u", { after: { ...book(3), tags: ["__debezium_unavailable_value"] } }) },
      // a key never stored whose unknown column may be NULL: inserted without it
      { key: keyOf(4), value: envelope(clock, "books", "u", { after: { ...book(4), attributes: "__debezium_unavailable_value", tags: ["t"] } }) },
      { key: keyOf(2), value: envelope(clock, "books", "u", { after: { ...book(2), price: 1.5, tags: ["__debezium_unavailable_value"] } }) },
    ]);
    await waitFor("update 2", async () => (await sql`SELECT price::text FROM dim_books WHERE id = 2`)[0]?.price === "1.50");
  } finally {
    await run.stop();
  }
  expect(await rows(sql, "SELECT id::int, title, price::text, array_length(tags, 1) AS tags, attributes FROM dim_books ORDER BY id")).toEqual([
    { id: 1, title: "T2", price: "9.99", tags: 50, attributes: null },
    { id: 2, title: "T", price: "1.50", tags: 1, attributes: null },
    { id: 4, title: "T", price: "9.99", tags: 1, attributes: null },
  ]);
  const dead = await rows(sql, "SELECT key, stage, error_code, error FROM cdc_sink.dead_letters");
  expect(dead).toEqual([
    {
      key: keyOf(3),
      stage: "apply",
      error_code: "TOAST_ROW_MISSING",
      error: 'row ["3"] is not in dim_books, and this update left out NOT NULL column(s) tags (unchanged TOAST values): it cannot be inserted',
    },
  ]);
  expect(run.metrics.deadLetters.value({ table: "dim_books", reason: "TOAST_ROW_MISSING" })).toBe(1);
  await sql.end();
}, 120_000);

test("positions stay exact over 64 bits: a change newer by one at 2^53 wins, and LSNs near 2^64 are stored", async () => {
  const { sql, topics, cfg } = await setup();
  const clock = newClock();
  /** an update of order `id` at source position (commit, lsn), written as Debezium writes it */
  const at = (id: number, total: number, commit: bigint, lsn: bigint) => {
    const env = envelope(clock, "orders", "u", { after: { id, status: "paid", total_amount: total } }) as { source: Record<string, unknown> };
    env.source.sequence = JSON.stringify([String(commit), String(lsn)]);
    env.source.lsn = "LSN";
    return { key: keyOf(id), value: JSON.stringify(env).replace('"LSN"', String(lsn)) };
  };
  const two53 = 2n ** 53n;
  const top = 2n ** 64n - 1n;
  const run = await startDaemon(cfg);
  try {
    await send(topics.orders, [at(8, 1, two53, two53), at(9, 1, top - 1n, top - 1n)]);
    await waitFor("first", async () => (await sql`SELECT count(*)::int AS n FROM fact_orders`)[0]!.n === 2);
    await send(topics.orders, [at(8, 2, two53 + 1n, two53 + 1n), at(9, 2, top, top)]);
    await waitFor("newer by one", async () => (await sql`SELECT sum(total_amount)::int AS n FROM fact_orders`)[0]!.n === 4);
    // the older ones again: stale, skipped
    await send(topics.orders, [at(8, 1, two53, two53), at(9, 1, top - 1n, top - 1n)]);
    await waitFor("replay consumed", async () => (await sql`SELECT sum(position)::int AS n FROM cdc_sink.checkpoints`)[0]!.n === 6);
  } finally {
    await run.stop();
  }
  expect(await rows(sql, "SELECT id::int, total_amount::int AS total, _cdc_commit_lsn::text AS c, _cdc_lsn::text AS l FROM fact_orders ORDER BY id")).toEqual([
    { id: 8, total: 2, c: String(two53 + 1n), l: String(two53 + 1n) },
    { id: 9, total: 2, c: String(top), l: String(top) },
  ]);
  expect(run.metrics.rowsSkipped.value({ table: "fact_orders" })).toBe(2);
  expect((await sql`SELECT count(*)::int AS n FROM cdc_sink.dead_letters`)[0]!.n).toBe(0);
  await sql.end();
}, 120_000);

test("a truncate event empties only tables whose mapping says truncate; an ignored one touches nothing", async () => {
  const { sql, topics, cfg } = await setup(undefined, { items: 'truncate = "ignore"', inventory: 'truncate = "truncate"' });
  const clock = newClock();
  const truncate = (table: string) => ({ key: null, value: envelope(clock, table, "t", {}) });
  await send(
    topics.orders,
    [
      ...[1, 2, 3].map((id) => ({ key: keyOf(id), value: envelope(clock, "orders", "c", { after: { id, status: "paid", total_amount: id } }) })),
      { key: keyOf(3), value: envelope(clock, "orders", "d", { before: { id: 3 } }) },
      { key: keyOf(3), value: null },
      truncate("orders"),
      { key: keyOf(4), value: envelope(clock, "orders", "c", { after: { id: 4, status: "paid", total_amount: 4 } }) },
    ],
    0,
  );
  await send(topics.items, [{ key: keyOf(1), value: envelope(clock, "order_items", "c", { after: { id: 1, order_id: 1, book_id: 1, quantity: 2 } }) }, truncate("order_items")], 0);
  await send(
    topics.inventory,
    [
      { key: keyOf(1, "book_id"), value: envelope(clock, "inventory", "c", { after: { book_id: 1, quantity: 5 } }) },
      truncate("inventory"),
      { key: keyOf(2, "book_id"), value: envelope(clock, "inventory", "c", { after: { book_id: 2, quantity: 6 } }) },
    ],
    0,
  );
  const run = await startDaemon(cfg);
  try {
    await waitFor("every event consumed", async () => (await sql`SELECT sum(position)::int AS n FROM cdc_sink.checkpoints`)[0]!.n === 7 + 2 + 3);
  } finally {
    await run.stop();
  }
  expect(await rows(sql, "SELECT id::int FROM fact_orders ORDER BY id")).toEqual([{ id: 1 }, { id: 2 }, { id: 4 }]);
  expect(await rows(sql, "SELECT key FROM cdc_sink.tombstones WHERE tbl = 'fact_orders'")).toEqual([{ key: '["3"]' }]);
  expect(await rows(sql, "SELECT id::int FROM fact_order_items")).toEqual([{ id: 1 }]);
  expect(await rows(sql, "SELECT book_id::int FROM fact_inventory")).toEqual([{ book_id: 2 }]);
  expect(run.metrics.truncatesIgnored.value({ table: "fact_orders" })).toBe(1);
  expect(run.metrics.truncatesIgnored.value({ table: "fact_order_items" })).toBe(1);
  expect(run.metrics.rowsApplied.value({ table: "fact_inventory", op: "truncate" })).toBe(1);
  await sql.end();
}, 120_000);

test("stale and replayed events never regress a row, nor resurrect a deleted one", async () => {
  const { sql, topics, cfg } = await setup();
  const clock = newClock();
  const e1 = envelope(clock, "orders", "c", { after: { id: 5, status: "pending", total_amount: 1 } });
  const e2 = envelope(clock, "orders", "u", { after: { id: 5, status: "paid", total_amount: 2 } });
  const e3 = envelope(clock, "orders", "c", { after: { id: 6, status: "paid", total_amount: 3 } });
  const e4 = envelope(clock, "orders", "d", { before: { id: 6 } });
  // newer first, then the older events arrive again (a producer retry, an out-of-order relay)
  await send(topics.orders, [
    { key: keyOf(5), value: e2 },
    { key: keyOf(6), value: e4 },
    { key: keyOf(6), value: null },
  ]);
  const run = await startDaemon(cfg);
  try {
    await waitFor("e2", async () => (await sql`SELECT status FROM fact_orders WHERE id = 5`)[0]?.status === "paid");
    await send(topics.orders, [
      { key: keyOf(5), value: e1 },
      { key: keyOf(6), value: e3 },
      { key: keyOf(7), value: envelope(clock, "orders", "c", { after: { id: 7, status: "paid", total_amount: 4 } }) },
    ]);
    await waitFor("marker", async () => (await sql`SELECT 1 FROM fact_orders WHERE id = 7`).length === 1);
  } finally {
    await run.stop();
  }
  expect(await rows(sql, "SELECT id, status FROM fact_orders ORDER BY id")).toEqual([
    { id: "5", status: "paid" },
    { id: "7", status: "paid" },
  ]);
  expect(run.metrics.rowsSkipped.value({ table: "fact_orders" })).toBeGreaterThanOrEqual(2);
  await sql.end();
}, 120_000);

test("soft delete flags the row with the source's commit time, a re-insert clears it, a stale delete does not flag it again", async () => {
  const { sql, topics, cfg } = await setup(undefined, { books: 'delete_mode = "soft"' });
  const clock = newClock();
  const deletedAt = Date.parse("2024-05-01T12:34:56.789Z");
  const created = envelope(clock, "books", "c", { after: { id: 1, title: "Dune" } });
  const deleted = envelope(clock, "books", "d", { before: { id: 1 } }, { tsMs: deletedAt });
  await send(topics.books, [
    { key: keyOf(1), value: created },
    { key: keyOf(1), value: deleted },
    { key: keyOf(2), value: envelope(clock, "books", "c", { after: { id: 2, title: "Emma" } }) },
  ]);
  const run = await startDaemon(cfg);
  try {
    await waitFor("both books", async () => (await sql`SELECT count(*)::int AS n FROM dim_books`)[0]!.n === 2);
    expect(await rows(sql, "SELECT id, title, _cdc_deleted_at IS NULL AS live, to_char(_cdc_deleted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') AS at FROM dim_books ORDER BY id")).toEqual([
      { id: "1", title: "Dune", live: false, at: "2024-05-01 12:34:56.789" },
      { id: "2", title: "Emma", live: true, at: null },
    ]);
    await send(topics.books, [{ key: keyOf(1), value: envelope(clock, "books", "c", { after: { id: 1, title: "Dune (2nd ed.)" } }) }, { key: keyOf(1), value: deleted }]);
    await waitFor("re-insert", async () => (await sql`SELECT title FROM dim_books WHERE id = 1`)[0]?.title === "Dune (2nd ed.)");
    await waitFor("replayed delete consumed", async () => run.metrics.eventsConsumed.value({ topic: topics.books }) === 5);
    await waitFor("committed", async () => (await sql`SELECT sum(position)::int AS n FROM cdc_sink.checkpoints`)[0]!.n === 5);
  } finally {
    await run.stop();
  }
  expect(await rows(sql, "SELECT title, _cdc_deleted_at FROM dim_books WHERE id = 1")).toEqual([{ title: "Dune (2nd ed.)", _cdc_deleted_at: null }]);
  await sql.end();
}, 120_000);

test("replaying every topic from offset 0 leaves the analytics state unchanged", async () => {
  const { sql, topics, cfg, tomlFor } = await setup();
  const clock = newClock();
  const msgs = [];
  for (let i = 0; i < 300; i++) {
    const id = i % 40;
    const op = i < 40 ? "c" : i % 7 === 0 ? "d" : "u";
    if (op === "d") {
      msgs.push({ key: keyOf(id), value: envelope(clock, "orders", "d", { before: { id } }) }, { key: keyOf(id), value: null });
    } else {
      msgs.push({ key: keyOf(id), value: envelope(clock, "orders", op === "u" ? "u" : "c", { after: { id, status: "paid", total_amount: i } }) });
    }
  }
  await send(topics.orders, msgs);
  const expected = new Map<number, number>();
  for (const m of msgs) {
    const id = JSON.parse(m.key).id;
    const v = m.value as { op: string; after: { total_amount: number } } | null;
    if (v === null || v.op === "d") expected.delete(id);
    else expected.set(id, v.after.total_amount);
  }
  const snapshotOf = () => rows(sql, "SELECT id::int, total_amount::float AS t FROM fact_orders ORDER BY id");
  const want = [...expected.entries()].sort((a, b) => a[0] - b[0]).map(([id, t]) => ({ id, t }));
  const run = await startDaemon(cfg);
  try {
    await waitFor("all applied", async () => JSON.stringify(await snapshotOf()) === JSON.stringify(want), 30_000);
  } finally {
    await run.stop();
  }
  const before = await rows(sql, "SELECT id, total_amount, _cdc_commit_lsn, _cdc_lsn FROM fact_orders ORDER BY id");
  // forget the checkpoints and use a fresh group: everything is read again from offset 0
  await sql`DELETE FROM cdc_sink.checkpoints`;
  const replay = config(tomlFor(`replay${seq}`));
  const run2 = await startDaemon(replay);
  try {
    await waitFor("replayed", async () => run2.metrics.eventsConsumed.value({ topic: topics.orders }) >= msgs.length, 30_000);
    await waitFor("checkpointed", async () => (await sql`SELECT coalesce(sum(position), 0)::int AS n FROM cdc_sink.checkpoints`)[0]!.n === msgs.length);
  } finally {
    await run2.stop();
  }
  expect(await rows(sql, "SELECT id, total_amount, _cdc_commit_lsn, _cdc_lsn FROM fact_orders ORDER BY id")).toEqual(before);
  expect(run2.metrics.rowsApplied.value({ table: "fact_orders", op: "upsert" })).toBe(0);
  await sql.end();
}, 120_000);

test("a poison message goes to the dead-letter table and the rest is applied", async () => {
  const { sql, topics, cfg } = await setup();
  const clock = newClock();
  await send(topics.orders, [
    { key: keyOf(1), value: envelope(clock, "orders", "c", { after: { id: 1, status: "paid", total_amount: 1 } }) },
    { key: keyOf(2), value: "{not json" },
    { key: keyOf(3), value: envelope(clock, "orders", "c", { after: { id: 3, status: "paid", total_amount: "not a number" } }) },
    { key: null, value: envelope(clock, "orders", "c", { after: { id: 4 } }) },
    // decodes, but the database rejects it: total_amount overflows numeric(12,2)
    { key: keyOf(5), value: envelope(clock, "orders", "c", { after: { id: 5, status: "paid", total_amount: 1e15 } }) },
    { key: keyOf(6), value: envelope(clock, "orders", "c", { after: { id: 6, status: "paid", total_amount: 6 } }) },
    // bytes PostgreSQL text cannot hold (NUL) or that are not UTF-8: kept exactly, as bytea
    { key: keyOf(7), value: Buffer.from('{"op":"c"\u0000}') },
    { key: Buffer.from([0x7b, 0xff, 0x7d]), value: Buffer.from([0xc3, 0x28]) },
  ], 0);
  const run = await startDaemon(cfg);
  try {
    await waitFor("dead letters", async () => (await sql`SELECT count(*)::int AS n FROM cdc_sink.dead_letters`)[0]!.n === 6);
  } finally {
    await run.stop();
  }
  expect(await rows(sql, "SELECT id FROM fact_orders ORDER BY id")).toEqual([{ id: "1" }, { id: "6" }]);
  const dead = await rows(sql, "SELECT part, position, target_table, stage, key, error, error_code FROM cdc_sink.dead_letters ORDER BY position::int");
  expect(dead.map((d) => [d.part, d.position, d.stage, d.target_table])).toEqual([
    [`${topics.orders}/0`, "1", "decode", "fact_orders"],
    [`${topics.orders}/0`, "2", "decode", "fact_orders"],
    [`${topics.orders}/0`, "3", "decode", "fact_orders"],
    [`${topics.orders}/0`, "4", "apply", "fact_orders"],
    [`${topics.orders}/0`, "6", "decode", "fact_orders"],
    [`${topics.orders}/0`, "7", "decode", "fact_orders"],
  ]);
  const bytes = await sql`SELECT position, key_bytes, value_bytes FROM cdc_sink.dead_letters WHERE position IN ('1', '6', '7') ORDER BY position::int`;
  expect(bytes.map((b) => [b.position, b.key_bytes && Buffer.from(b.key_bytes).toString("hex"), b.value_bytes && Buffer.from(b.value_bytes).toString("hex")])).toEqual([
    ["1", null, null],
    ["6", null, Buffer.from('{"op":"c"\u0000}').toString("hex")],
    ["7", "7bff7d", "c328"],
  ]);
  expect(dead.find((d) => d.stage === "apply")!.error_code).toBe("22003");
  expect(dead.find((d) => d.position === "2")!.error).toMatch(/total_amount/);
  expect(run.metrics.deadLetters.value({ table: "fact_orders", reason: "decode" })).toBe(5);
  await sql.end();
}, 120_000);

test("bounded memory: batches respect their limits, and a blocked database stops the reading", async () => {
  const { sql, topics, cfg: base } = await setup("[batch]\nmax_events = 200\nmax_latency_ms = 20");
  const cfg = { ...base, kafka: { ...base.kafka!, fetch_max_messages: 100 } };
  const clock = newClock();
  const msgs = Array.from({ length: 3000 }, (_, i) => ({ key: keyOf(i), value: envelope(clock, "orders", "c", { after: { id: i, status: "paid", total_amount: 1 } }) }));
  await send(topics.orders, msgs);
  // hold the table: the first apply blocks on the lock
  const blocker = await sql.reserve();
  await blocker`BEGIN`;
  await blocker`LOCK TABLE fact_orders IN ACCESS EXCLUSIVE MODE`;
  const run = await startDaemon(cfg);
  try {
    await waitFor("reading to start", async () => run.metrics.eventsConsumed.value({ topic: topics.orders }) > 0);
    await new Promise((r) => setTimeout(r, 1500));
    // one batch blocked in apply, at most one more read ahead of it: nothing else is buffered
    const consumed = run.metrics.eventsConsumed.value({ topic: topics.orders });
    expect(consumed).toBeLessThanOrEqual(2 * 200 + 100);
    await blocker`ROLLBACK`;
    blocker.release();
    await waitFor("all rows", async () => (await sql`SELECT count(*)::int AS n FROM fact_orders`)[0]!.n === 3000);
  } finally {
    await run.stop();
  }
  const hist = run.metrics.batchSize.render();
  const total = Number(/cdc_sink_batch_size_events_count (\d+)/.exec(hist)![1]);
  const upTo500 = Number(/cdc_sink_batch_size_events_bucket\{le="500"\} (\d+)/.exec(hist)![1]);
  expect(total).toBeGreaterThanOrEqual(3000 / 300);
  expect(upTo500).toBe(total);
  expect(Number(/cdc_sink_batch_size_events_sum (\d+)/.exec(hist)![1])).toBe(3000);
  await sql.end();
}, 120_000);
