// verify and repair against real PostgreSQL: differences planted in analytics and at the source
// behind the sink's back, found exactly while streaming continues, mended, verified equal.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import postgres, { type Sql } from "postgres";
import type { Config } from "../src/config.ts";
import { ensureStateTables } from "../src/sink/state.ts";
import { createMetrics } from "../src/metrics.ts";
import { silentLogger } from "../src/log.ts";
import { runRepair, runVerify, startVerifyLoop, verifyOnce } from "../src/verify/index.ts";
import { envelope, keyOf, newClock } from "./support/debezium.ts";
import { analyticsDb, config, ROOT, startDaemon, waitFor } from "./support/harness.ts";
import { type PgCluster, sharedCluster } from "./support/pg.ts";
import { mockKafka } from "./support/kafka.ts";

type Doc = {
  status: number;
  tables: Array<{
    table: string;
    status: string;
    chunks: number;
    missing: { keys: Array<{ key: string[] }> };
    extra: { keys: Array<{ key: string[] }> };
    different: { keys: Array<{ key: string[]; columns: string[] }> };
    unconfirmed: { keys: Array<{ key: string[] }> };
    reason: string | null;
  }>;
};

/** runVerify with --json: the exit status and the parsed document. */
async function verifyJson(cfg: Config, opts: Record<string, unknown> = {}): Promise<{ code: number; doc: Doc }> {
  const lines: string[] = [];
  const code = await runVerify(cfg, { json: true, print: (l) => lines.push(l), ...opts });
  return { code, doc: JSON.parse(lines.join("\n")) as Doc };
}

/** Per table: the keys found missing, extra and different (with columns), sorted. */
function findings(doc: Doc) {
  const ids = (ks: Array<{ key: string[] }>) => ks.map((k) => k.key.join(",")).sort((a, b) => Number(a) - Number(b));
  return Object.fromEntries(
    doc.tables.map((t) => [
      t.table,
      {
        missing: ids(t.missing.keys),
        extra: ids(t.extra.keys),
        different: t.different.keys.map((k) => `${k.key.join(",")}:${k.columns.join("+")}`).sort(),
      },
    ]),
  );
}

const none = { missing: [], extra: [], different: [] };

async function pgSources(pg: PgCluster) {
  const ecomUrl = await pg.createDatabase("vecom");
  const invUrl = await pg.createDatabase("vinv");
  const ecom = postgres(ecomUrl, { max: 4, onnotice: () => {} });
  const inv = postgres(invUrl, { max: 2, onnotice: () => {} });
  await ecom.unsafe(readFileSync(`${ROOT}sql/ecom-ddl.sql`, "utf8"));
  await inv.unsafe(readFileSync(`${ROOT}sql/inventory-ddl.sql`, "utf8"));
  const analyticsUrl = await pg.createDatabase("vanalytics");
  const analytics = await analyticsDb(analyticsUrl);
  const n = Math.random().toString(36).slice(2, 8);
  const slot = `v_ecom_${n}`;
  const toml = readFileSync(`${ROOT}sink.postgres.toml`, "utf8")
    .replace("postgres://cdc_sink@analytics-db:5432/analytics", analyticsUrl)
    .replace("postgres://cdc_sink@ecom-db:5432/ecom", `${ecomUrl}"\nslot = "${slot}`)
    .replace("postgres://cdc_sink@inventory-db:5432/inventory", `${invUrl}"\nslot = "v_inv_${n}`)
    .replace('listen = "0.0.0.0:8080"', "enabled = false")
    .replace("[http]", "[verify]\nchunk_rows = 100\nrows_per_second = 1000000\n\n[http]");
  return { ecom, inv, analytics, slot, cfg: config(toml), analyticsUrl };
}

/** Writes to both sources until stopped, away from the planted keys: new orders and their updates, inventory from book 200 on. */
function startWriter(ecom: Sql, inv: Sql) {
  let stop = false;
  let writes = 0;
  const done = (async () => {
    const mine: number[] = [];
    while (!stop) {
      const [o] = await ecom`INSERT INTO orders (customer_id, status, total_amount) VALUES (${writes}, 'pending', ${writes % 500}) RETURNING id`;
      mine.push(Number(o!.id));
      await ecom`UPDATE orders SET status = 'paid', total_amount = total_amount + 1 WHERE id = ${mine[Math.floor(Math.random() * mine.length)]!}`;
      await inv`UPDATE inventory SET quantity = quantity + 1 WHERE book_id = ${200 + (writes % 100)}`;
      writes++;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    async stop() {
      stop = true;
      await done;
      return writes;
    },
  };
}

test("PostgreSQL source: differences planted in analytics and behind the sink's back are found exactly while streaming continues, repaired, then equal", async () => {
  const pg = await sharedCluster();
  const { ecom, inv, analytics, slot, cfg } = await pgSources(pg);
  await ecom.unsafe(`INSERT INTO books (isbn, title, author, price, tags, attributes, published_on)
    SELECT g::text, 'title ' || g, 'author', (g % 50) + 0.99, ARRAY['t' || (g % 3)], jsonb_build_object('pages', g), date '2000-01-01' + g FROM generate_series(1, 400) g`);
  await ecom.unsafe(`INSERT INTO orders (customer_id, status, total_amount, created_at) SELECT g % 37, 'paid', (g % 1000) / 7.0, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute' FROM generate_series(1, 1000) g`);
  await ecom.unsafe(`INSERT INTO order_items (order_id, book_id, quantity, unit_price) SELECT 100 + g % 100, 1 + g % 400, 1 + g % 3, 9.99 FROM generate_series(1, 500) g`);
  await inv.unsafe(`INSERT INTO inventory (book_id, quantity) SELECT g, g % 20 FROM generate_series(1, 300) g`);
  let run = await startDaemon(cfg);
  const synced = async () => (await analytics`SELECT (SELECT count(*) FROM fact_orders) + (SELECT count(*) FROM fact_order_items) + (SELECT count(*) FROM dim_books) + (SELECT count(*) FROM fact_inventory) AS n`)[0]!.n;
  await waitFor("initial copy", async () => Number(await synced()) === 1000 + 500 + 400 + 300, 60_000);
  expect((await verifyJson(cfg)).code).toBe(0);

  // behind the sink's back: the slot dropped while the source is written, then created again
  await run.stop();
  await ecom`SELECT pg_drop_replication_slot(${slot})`;
  await ecom`UPDATE orders SET status = 'refunded' WHERE id = 20`;
  await ecom`DELETE FROM orders WHERE id = 21`;
  const [lost] = await ecom`INSERT INTO orders (customer_id, status, total_amount) VALUES (5, 'paid', 12.5) RETURNING id`;
  await ecom`UPDATE books SET title = 'retitled' WHERE id = 5`;
  await ecom`SELECT pg_create_logical_replication_slot(${slot}, 'pgoutput')`;
  // the sink refuses the re-created slot; the operator accepts the gap, leaving it to verify and repair
  run = await startDaemon(cfg);
  expect(await run.done).toBe(1);
  expect(run.metrics.registry.render()).toContain('cdc_sink_errors_total{stage="source",code="SLOT_GAP"} 1');
  await run.sql.end();
  await analytics`DELETE FROM cdc_sink.checkpoints WHERE stream = ${`pg:${slot}`} AND part = 'ecom'`;
  run = await startDaemon(cfg);
  // in analytics: rows deleted, changed, added; a soft-deleted book counts as missing
  await analytics`DELETE FROM fact_orders WHERE id = 10`;
  await analytics`UPDATE fact_orders SET total_amount = total_amount + 1, currency = 'USD' WHERE id = 11`;
  await analytics`INSERT INTO fact_orders (id, customer_id, status) VALUES (900000, 1, 'paid')`;
  await analytics`UPDATE dim_books SET _cdc_deleted_at = now() WHERE id = 3`;
  await analytics`DELETE FROM fact_inventory WHERE book_id = 7`;
  await analytics`UPDATE fact_inventory SET quantity = quantity + 5 WHERE book_id = 8`;
  const writer = startWriter(ecom, inv);
  try {
    const found = await verifyJson(cfg);
    expect(findings(found.doc)).toEqual({
      fact_orders: { missing: ["10", String(lost!.id)], extra: ["21", "900000"], different: ["11:total_amount+currency", "20:status"] },
      fact_order_items: none,
      dim_books: { missing: ["3"], extra: [], different: ["5:title"] },
      fact_inventory: { missing: ["7"], extra: [], different: ["8:quantity"] },
    });
    expect(found.code).toBe(1);
    expect(found.doc.tables.find((t) => t.table === "fact_orders")!.chunks).toBeGreaterThan(9);

    const printed: string[] = [];
    expect(await runRepair(cfg, { print: (l) => printed.push(l) })).toBe(0);
    const text = printed.join("\n");
    expect(text).toContain("fact_orders <- ecom public.orders: DIFFERENT");
    expect(text).toMatch(/mended 6 rows: 2 inserted, 2 updated, 2 deleted/);
    expect(text).toMatch(new RegExp(`inserted 10, ${lost!.id}|inserted ${lost!.id}, 10`));
    expect(text).toMatch(/deleted +(21, 900000|900000, 21)/);
    expect(text).toContain("now equal");
    expect(text).toMatch(/repair: 4 tables compared, no differences/);
    // the tombstones keep a replayed insert of a deleted row out
    expect((await analytics`SELECT count(*)::int AS n FROM cdc_sink.tombstones WHERE tbl = 'fact_orders' AND key = ANY(${["[\"21\"]", "[\"900000\"]"]})`)[0]!.n).toBe(2);
    expect((await analytics`SELECT _cdc_deleted_at IS NULL AS live, title FROM dim_books WHERE id = 3`)[0]).toEqual({ live: true, title: "title 3" });

    const after = await verifyJson(cfg);
    expect(findings(after.doc)).toEqual({ fact_orders: none, fact_order_items: none, dim_books: none, fact_inventory: none });
    expect(after.code).toBe(0);
  } finally {
    expect(await writer.stop()).toBeGreaterThan(10);
  }
  // the repaired rows stay repaired while the stream goes on: a later change of a repaired key wins
  await ecom`UPDATE orders SET status = 'delivered' WHERE id = 20`;
  await waitFor("the change after the repair", async () => (await analytics`SELECT status FROM fact_orders WHERE id = 20`)[0]?.status === "delivered");
  expect((await verifyJson(cfg)).code).toBe(0);
  await run.stop();
  await Promise.all([ecom.end(), inv.end(), analytics.end()]);
}, 240_000);

test("exit 2 when the sink is not running to confirm a difference, or a source is unreachable; 64 for an unknown --table", async () => {
  const pg = await sharedCluster();
  const { ecom, inv, analytics, cfg, analyticsUrl } = await pgSources(pg);
  await ecom.unsafe(`INSERT INTO orders (customer_id, status, total_amount) SELECT g, 'paid', g FROM generate_series(1, 300) g`);
  const run = await startDaemon(cfg);
  await waitFor("copied", async () => (await analytics`SELECT count(*)::int AS n FROM fact_orders`)[0]!.n === 300);
  await run.stop();
  await analytics`UPDATE fact_orders SET status = 'cancelled' WHERE id = 42`;
  const t0 = Date.now();
  const stopped = await verifyJson(cfg, { table: "fact_orders", inactiveGraceMs: 500 });
  expect(stopped.code).toBe(2);
  const t = stopped.doc.tables[0]!;
  expect(t.status).toBe("unconfirmed");
  expect(t.unconfirmed.keys).toEqual([{ key: ["42"] }]);
  expect(t.reason).toMatch(/replication slot v_ecom_\w+ is not streaming \(is cdc-sink running\?\)/);
  expect(Date.now() - t0).toBeLessThan(20_000);
  // repair does not need the sink: a position-guarded write of the source row is right either way
  expect(await runRepair(cfg, { table: "fact_orders", print: () => {}, inactiveGraceMs: 500 })).toBe(0);
  expect((await analytics`SELECT status FROM fact_orders WHERE id = 42`)[0]!.status).toBe("paid");

  const unreachable = config(
    (await Bun.file(`${ROOT}sink.postgres.toml`).text())
      .replace("postgres://cdc_sink@analytics-db:5432/analytics", analyticsUrl)
      .replace("postgres://cdc_sink@ecom-db:5432/ecom", "postgres://nobody@127.0.0.1:1/ecom")
      .replace("postgres://cdc_sink@inventory-db:5432/inventory", "postgres://nobody@127.0.0.1:1/inventory"),
  );
  const lines: string[] = [];
  expect(await runVerify(unreachable, { table: "fact_inventory", print: (l) => lines.push(l) })).toBe(2);
  expect(lines.join("\n")).toMatch(/fact_inventory <- inventory public.inventory: COULD NOT COMPARE: .*(ECONNREFUSED|connect)/i);
  const usage: string[] = [];
  expect(await runVerify(cfg, { table: "nope", print: (l) => usage.push(l) })).toBe(64);
  expect(usage[0]).toMatch(/--table nope: no mapping/);
  await Promise.all([ecom.end(), inv.end(), analytics.end()]);
}, 120_000);

const kafka = mockKafka();

test("Kafka mappings with verify_source: planted differences found exactly, in-flight changes within settle not reported, repaired", async () => {
  const pg = await sharedCluster();
  const sourceUrl = await pg.createDatabase("vksrc");
  const src = postgres(sourceUrl, { max: 2, onnotice: () => {} });
  await src.unsafe(readFileSync(`${ROOT}sql/ecom-ddl.sql`, "utf8"));
  const analyticsUrl = await pg.createDatabase("vksink");
  const analytics = await analyticsDb(analyticsUrl);
  const topic = `ecom-connector.public.orders.v${Math.random().toString(36).slice(2, 7)}`;
  kafka.mock.createTopic(topic, 2);
  const cfg = config(`
[kafka]
bootstrap_servers = "${kafka.mock.bootstrapServers}"
group_id = "verify-${topic}"
[kafka.properties]
"fetch.wait.max.ms" = 10
[postgres]
url = "${analyticsUrl}"
[http]
enabled = false
[debezium]
"decimal.handling.mode" = "double"
[verify]
chunk_rows = 50
rows_per_second = 1000000
settle = "3s"
[[postgres_sources]]
name = "ecom"
url = "${sourceUrl}"
[[mappings]]
topic = "${topic}"
table = "fact_orders"
verify_source = "ecom"
verify_table = "public.orders"
`);
  const clock = newClock();
  /** what the connector would send for the source row `id` (or its delete) */
  const emit = async (ids: number[], op: "c" | "u" | "d" = "c") => {
    const rows = await src`SELECT id::int, customer_id::int, status, total_amount::float8 AS total_amount, currency,
      to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS updated_at
      FROM orders WHERE id = ANY(${ids}) ORDER BY id`;
    const msgs =
      op === "d"
        ? ids.flatMap((id) => [{ key: keyOf(id), value: JSON.stringify(envelope(clock, "orders", "d", { before: { id } })) }, { key: keyOf(id), value: null }])
        : rows.map((r) => ({ key: keyOf(r.id as number), value: JSON.stringify(envelope(clock, "orders", op, { after: { ...r } })) }));
    await kafka.producer.produce(topic, msgs);
    expect((await kafka.producer.flush(10_000)).failed).toEqual([]);
  };
  await src.unsafe(`INSERT INTO orders (customer_id, status, total_amount, created_at, updated_at)
    SELECT g, 'paid', g * 1.25, timestamptz '2024-03-01 10:00:00.123456+00' + g * interval '1 s', timestamptz '2024-03-01 11:00:00+00' FROM generate_series(1, 400) g`);
  await emit(Array.from({ length: 400 }, (_, i) => i + 1));
  const run = await startDaemon(cfg);
  try {
    await waitFor("consumed", async () => (await analytics`SELECT count(*)::int AS n FROM fact_orders`)[0]!.n === 400);
    expect((await verifyJson(cfg)).code).toBe(0);
    // behind the back (no event): an update, a delete, an insert; in analytics: a delete, a change, an extra row
    await src`UPDATE orders SET status = 'shipped' WHERE id = 7`;
    await src`DELETE FROM orders WHERE id = 8`;
    const [lost] = await src`INSERT INTO orders (customer_id, status, total_amount) VALUES (1, 'paid', 3.5) RETURNING id`;
    await analytics`DELETE FROM fact_orders WHERE id = 5`;
    await analytics`UPDATE fact_orders SET customer_id = 0 WHERE id = 6`;
    await analytics`INSERT INTO fact_orders (id, status) VALUES (100000, 'paid')`;
    // streaming continues: source changes whose events arrive within settle
    let stop = false;
    const inFlight = (async () => {
      for (let i = 0; !stop; i++) {
        const id = 100 + (i % 200);
        await src`UPDATE orders SET total_amount = total_amount + 1 WHERE id = ${id}`;
        await new Promise((r) => setTimeout(r, 300));
        await emit([id], "u");
      }
    })();
    try {
      const found = await verifyJson(cfg);
      expect(findings(found.doc)).toEqual({ fact_orders: { missing: ["5", String(lost!.id)], extra: ["8", "100000"], different: ["6:customer_id", "7:status"] } });
      expect(found.code).toBe(1);
      const printed: string[] = [];
      expect(await runRepair(cfg, { print: (l) => printed.push(l) })).toBe(0);
      expect(printed.join("\n")).toMatch(/mended 6 rows: 2 inserted, 2 updated, 2 deleted/);
      expect((await verifyJson(cfg)).code).toBe(0);
    } finally {
      stop = true;
      await inFlight;
    }
    // a repaired row keeps its place in the stream: a replay of its old event stays below, a newer event wins
    const [r6] = await analytics`SELECT _cdc_commit_lsn::text AS c, _cdc_lsn::text AS l FROM fact_orders WHERE id = 6`;
    expect(r6!.c).not.toBe("0");
    await src`UPDATE orders SET status = 'delivered' WHERE id = 7`;
    await emit([7], "u");
    await waitFor("newer event after the repair", async () => (await analytics`SELECT status FROM fact_orders WHERE id = 7`)[0]?.status === "delivered");
    // the repair's delete left a tombstone above the row's old insert: replaying it changes nothing
    expect((await analytics`SELECT count(*)::int AS n FROM cdc_sink.tombstones WHERE tbl = 'fact_orders' AND key = '["8"]'`)[0]!.n).toBe(1);
    expect((await verifyJson(cfg)).code).toBe(0);
  } finally {
    await run.stop();
  }
  await Promise.all([src.end(), analytics.end()]);
}, 180_000);

test("values compare by canonical text whatever each database's session defaults; repair fills an empty table exactly", async () => {
  const pg = await sharedCluster();
  const sourceUrl = await pg.createDatabase("vtsrc");
  const analyticsUrl = await pg.createDatabase("vtdst");
  const admin = postgres(pg.url(), { max: 1, onnotice: () => {} });
  const dbOf = (u: string) => new URL(u).pathname.slice(1);
  await admin.unsafe(`ALTER DATABASE ${dbOf(sourceUrl)} SET timezone = 'America/Los_Angeles'`);
  await admin.unsafe(`ALTER DATABASE ${dbOf(sourceUrl)} SET datestyle = 'German, DMY'`);
  await admin.unsafe(`ALTER DATABASE ${dbOf(sourceUrl)} SET intervalstyle = 'postgres_verbose'`);
  await admin.unsafe(`ALTER DATABASE ${dbOf(sourceUrl)} SET extra_float_digits = -3`);
  await admin.unsafe(`ALTER DATABASE ${dbOf(analyticsUrl)} SET timezone = 'Asia/Kolkata'`);
  await admin.unsafe(`ALTER DATABASE ${dbOf(analyticsUrl)} SET datestyle = 'SQL, MDY'`);
  await admin.unsafe(`ALTER DATABASE ${dbOf(analyticsUrl)} SET intervalstyle = 'iso_8601'`);
  await admin.unsafe(`ALTER DATABASE ${dbOf(analyticsUrl)} SET bytea_output = 'escape'`);
  await admin.end();
  const src = postgres(sourceUrl, { max: 1, onnotice: () => {} });
  const dst = postgres(analyticsUrl, { max: 1, onnotice: () => {} });
  await src.unsafe(`CREATE TABLE public.things (id int PRIMARY KEY, code varchar(10), amount numeric(12,3), ratio real, big float8, at timestamptz, local timestamp(6), day date,
    tod time, span interval, doc json, tags text[], raw bytea, price money, ok boolean, uid uuid, gone text)`);
  await src.unsafe(`INSERT INTO public.things SELECT g, 'c' || g, g / 4.0, g / 7.0, g * 1e300 / 3, timestamptz '2024-06-30 23:59:59.999999+14' + g * interval '1 h',
    timestamp '1999-12-31 23:59:59.999' + g * interval '1 day', date '2000-02-28' + g, time '23:59:59.5', interval '1 year 2 months 3 days 04:05:06.789' * g,
    ('{"b": ' || g || ', "a": [1, 2.50]}')::json, ARRAY['x y', NULL, 'q"uote'], decode('00ff' || lpad(to_hex(g), 4, '0'), 'hex'), g * 1.5, g % 2 = 0, md5(g::text)::uuid, 'not in analytics'
    FROM generate_series(1, 250) g`);
  await src.unsafe(`INSERT INTO public.things (id) VALUES (1000)`);
  await dst.unsafe(`CREATE TABLE things (id bigint PRIMARY KEY, code text, amount numeric(12,2), ratio float8, big float8, at timestamptz, local timestamp(3), day date,
    tod time, span interval, doc jsonb, tags text[], raw bytea, price money, ok boolean, uid uuid, note text, _cdc_commit_lsn numeric(20,0), _cdc_lsn numeric(20,0), _cdc_synced_at timestamptz, _cdc_deleted_at timestamptz)`);
  await ensureStateTables(dst, "cdc_sink");
  const cfg = config(`
[kafka]
bootstrap_servers = "127.0.0.1:1"
[postgres]
url = "${analyticsUrl}"
[verify]
chunk_rows = 64
rows_per_second = 1000000
settle = "200ms"
[[postgres_sources]]
name = "src"
url = "${sourceUrl}"
[[mappings]]
topic = "src.public.things"
table = "things"
verify_source = "src"
`);
  const empty = await verifyJson(cfg);
  expect(empty.code).toBe(1);
  expect(empty.doc.tables[0]!.missing.keys.length).toBe(251);
  const printed: string[] = [];
  expect(await runRepair(cfg, { print: (l) => printed.push(l) })).toBe(0);
  expect(printed.join("\n")).toMatch(/mended 251 rows: 251 inserted/);
  const equal = await verifyJson(cfg);
  expect(equal.code).toBe(0);
  // every column compared: one change each is found in its own column
  await dst.unsafe(`UPDATE things SET amount = amount + 0.01 WHERE id = 3; UPDATE things SET span = span + interval '1 microsecond' WHERE id = 4;
    UPDATE things SET at = at + interval '1 microsecond' WHERE id = 5; UPDATE things SET doc = doc || '{"c": 1}' WHERE id = 6;
    UPDATE things SET ratio = ratio * (1 + 1e-15) WHERE id = 7; UPDATE things SET price = price + 0.01::money WHERE id = 8; UPDATE things SET tags = '{}' WHERE id = 1000; UPDATE things SET code = '' WHERE id = 1000`);
  await src.unsafe(`UPDATE public.things SET gone = 'changed' WHERE id = 9`); // not a mapped column: no difference
  // numeric(12,3) -> numeric(12,2): 0.250 is 0.25, but 1.234 is not the 1.23 a cast would round it to
  await dst.unsafe(`UPDATE things SET amount = 1.23 WHERE id = 11`);
  await src.unsafe(`UPDATE public.things SET amount = 1.234 WHERE id = 11`);
  // timestamp(6) -> timestamp(3): the database rounds fractional seconds on every write the sink makes, so that is equal
  await dst.unsafe(`UPDATE things SET local = '2001-01-01 10:00:00.123' WHERE id = 12`);
  await src.unsafe(`UPDATE public.things SET local = '2001-01-01 10:00:00.123456' WHERE id = 12`);
  expect(findings((await verifyJson(cfg)).doc)).toEqual({
    things: { missing: [], extra: [], different: ["1000:code+tags", "11:amount", "3:amount", "4:span", "5:at", "6:doc", "7:ratio", "8:price"] },
  });
  const text: string[] = [];
  await runVerify(cfg, { print: (l) => text.push(l) });
  expect(text.join("\n")).toContain("not compared (not in the source table): note");
  await src.unsafe(`UPDATE public.things SET amount = 1.23 WHERE id = 11`);

  // in the daemon: metrics per run; repair only when [verify] repair = true
  const metrics = createMetrics();
  expect(await verifyOnce(cfg, { metrics, log: silentLogger, signal: new AbortController().signal })).toBe(1);
  let page = metrics.registry.render();
  expect(page).toContain(`cdc_sink_verify_rows_different{table="things"} 7`);
  expect(page).toContain(`cdc_sink_verify_rows_compared_total{table="things"} 251`);
  expect(page).toMatch(/cdc_sink_verify_last_run_timestamp_seconds \d{10}/);
  expect(page).toContain("cdc_sink_verify_duration_seconds_count 1");
  const stop = new AbortController();
  const loop = startVerifyLoop({ ...cfg, verify: { ...cfg.verify, interval: "300ms", repair: true } }, { metrics, log: silentLogger, signal: stop.signal, firstDelayMs: 0 });
  await waitFor("a background run that repairs", async () => metrics.registry.render().includes(`cdc_sink_verify_rows_repaired_total{table="things"} 7`));
  await waitFor("a run after the repair", async () => metrics.registry.render().includes(`cdc_sink_verify_rows_different{table="things"} 0`));
  stop.abort();
  await loop;
  page = metrics.registry.render();
  expect(page).toContain(`cdc_sink_verify_errors_total`);
  expect(page).not.toContain(`cdc_sink_verify_errors_total{table="things"}`);
  expect((await verifyJson(cfg)).code).toBe(0);
  await Promise.all([src.end(), dst.end()]);
}, 120_000);
