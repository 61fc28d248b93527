// PostgreSQL source end to end: logical replication (pgoutput) from two source databases.
import { expect, test } from "bun:test";
import { readFileSync, writeFileSync} from "node:fs";
import { join } from "node:path";
import postgres, { type Sql } from "postgres";
import { analyticsDb, config, ROOT, startDaemon, waitFor } from "./support/harness.ts";
import { type PgCluster, sharedCluster, startCluster } from "./support/pg.ts";
import { tempDir } from "./support/cleanup.ts";

const dir = tempDir("cdc-sink-pgsrc-");

async function sources(pg: PgCluster) {
  const ecomUrl = await pg.createDatabase("ecom");
  const invUrl = await pg.createDatabase("inventory");
  const ecom = postgres(ecomUrl, { max: 4, onnotice: () => {} });
  const inv = postgres(invUrl, { max: 2, onnotice: () => {} });
  await ecom.unsafe(readFileSync(`${ROOT}sql/ecom-ddl.sql`, "utf8"));
  await inv.unsafe(readFileSync(`${ROOT}sql/inventory-ddl.sql`, "utf8"));
  const analyticsUrl = await pg.createDatabase("analytics");
  const analytics = await analyticsDb(analyticsUrl);
  const n = Math.random().toString(36).slice(2, 8);
  const toml = readFileSync(`${ROOT}sink.postgres.toml`, "utf8")
    .replace("postgres://cdc_sink@analytics-db:5432/analytics", analyticsUrl)
    .replace("postgres://cdc_sink@ecom-db:5432/ecom", `${ecomUrl}"\nslot = "s_ecom_${n}`)
    .replace("postgres://cdc_sink@inventory-db:5432/inventory", `${invUrl}"\nslot = "s_inv_${n}`)
    .replace('listen = "0.0.0.0:8080"', "enabled = false");
  return { ecom, inv, analytics, toml, cfg: config(toml) };
}

const same = async (src: Sql, dst: Sql, q: string, timeoutMs = 30_000) => {
  let a = "";
  let b = "";
  await waitFor(
    `analytics to match the source for: ${q}`,
    async () => {
      a = JSON.stringify(await src.unsafe(q));
      b = JSON.stringify(await dst.unsafe(q.replace(/\borders\b/, "fact_orders").replace(/\binventory\b/, "fact_inventory").replace(/\bFROM books\b/, "FROM dim_books WHERE _cdc_deleted_at IS NULL")));
      return a === b;
    },
    timeoutMs,
  ).catch((e) => {
    const A = JSON.parse(a) as unknown[];
    const B = JSON.parse(b) as unknown[];
    const bs = new Set(B.map((x) => JSON.stringify(x)));
    const as = new Set(A.map((x) => JSON.stringify(x)));
    const onlySource = A.filter((x) => !bs.has(JSON.stringify(x))).slice(0, 5);
    const onlyAnalytics = B.filter((x) => !as.has(JSON.stringify(x))).slice(0, 5);
    throw new Error(`${(e as Error).message}\n${A.length} source rows, ${B.length} analytics rows\nonly in source    ${JSON.stringify(onlySource)}\nonly in analytics ${JSON.stringify(onlyAnalytics)}`);
  });
};

test("existing rows are snapshotted; inserts, updates and deletes in both databases follow", async () => {
  const pg = await sharedCluster();
  const { ecom, inv, analytics, cfg } = await sources(pg);
  await ecom`INSERT INTO books (isbn, title, author, price, tags, attributes) VALUES ('1', 'Dune', 'Herbert', 9.99, '{sf}', '{"pages": 412}'), ('2', 'Emma', 'Austen', 5.5, '{}', '{}')`;
  await ecom`INSERT INTO orders (customer_id, status, total_amount) VALUES (1, 'paid', 15.49)`;
  await inv`INSERT INTO inventory (book_id, quantity) VALUES (1, 10), (2, 3)`;
  const run = await startDaemon(cfg);
  try {
    await same(ecom, analytics, "SELECT id, title, price, tags, attributes FROM books ORDER BY id");
    await same(inv, analytics, "SELECT book_id, quantity FROM inventory ORDER BY book_id");
    const [o] = await ecom`INSERT INTO orders (customer_id, status, total_amount) VALUES (2, 'pending', 99.95) RETURNING id`;
    await ecom`INSERT INTO order_items (order_id, book_id, quantity, unit_price) VALUES (${o!.id}, 1, 2, 9.99)`;
    await ecom`UPDATE orders SET status = 'paid', updated_at = '2024-05-01T12:00:00.123456+02' WHERE id = ${o!.id}`;
    await inv`UPDATE inventory SET quantity = quantity - 2 WHERE book_id = 1`;
    await inv`DELETE FROM inventory WHERE book_id = 2`;
    await ecom`DELETE FROM orders WHERE id = 1`;
    await same(ecom, analytics, "SELECT id, customer_id, status, total_amount, currency, created_at, updated_at FROM orders ORDER BY id");
    await same(inv, analytics, "SELECT book_id, quantity, reserved, warehouse, updated_at FROM inventory ORDER BY book_id");
    expect((await analytics`SELECT count(*)::int AS n FROM fact_order_items`)[0]!.n).toBe(1);
    const metrics = run.metrics.registry.render();
    expect(metrics).toMatch(/cdc_sink_replication_slot_retained_wal_bytes\{slot="s_ecom_\w+"\} \d+/);
    expect(metrics).toMatch(/cdc_sink_replication_slot_retained_wal_bytes\{slot="s_inv_\w+"\} \d+/);
    expect(metrics).toContain("cdc_sink_source_connected 1");
  } finally {
    await run.stop();
  }
  await Promise.all([ecom.end(), inv.end(), analytics.end()]);
}, 120_000);

test("a snapshot row the analytics table rejects is a dead letter naming the column; the other rows and the stream go on", async () => {
  const pg = await sharedCluster();
  const { ecom, inv, analytics, cfg } = await sources(pg);
  await analytics.unsafe("DROP VIEW IF EXISTS vw_product_sales_volume; ALTER TABLE dim_books ALTER COLUMN title TYPE varchar(5)");
  await ecom`INSERT INTO books (isbn, title, author, price) SELECT 'i' || g, CASE WHEN g IN (2, 3) THEN 'too long ' || g ELSE 't' || g END, 'a', 1 FROM generate_series(1, 50) g`;
  const run = await startDaemon(cfg);
  try {
    await ecom`INSERT INTO books (isbn, title, author, price) VALUES ('new', 'Emma', 'Austen', 5.5)`;
    await waitFor("the other rows and the streamed one", async () => (await analytics`SELECT count(*)::int AS n FROM dim_books`)[0]!.n === 49, 30_000);
    const dead = await analytics`SELECT key, error_code, error, part FROM cdc_sink.dead_letters ORDER BY key`;
    expect(dead.map((d) => [d.key, d.error_code, d.part])).toEqual([
      ['["2"]', "22001", "ecom#snapshot"],
      ['["3"]', "22001", "ecom#snapshot"],
    ]);
    expect(dead.every((d) => d.error.startsWith("column title: "))).toBe(true);
  } finally {
    await run.stop();
    await Promise.all([ecom.end(), inv.end(), analytics.end()]);
  }
});

test("writes during the snapshot end consistent", async () => {
  const pg = await sharedCluster();
  const { ecom, inv, analytics, cfg } = await sources(pg);
  await ecom.unsafe(`INSERT INTO books (isbn, title, author, price) SELECT g::text, 'b' || g, 'a', g % 100 FROM generate_series(1, 30000) g`);
  let stop = false;
  let writes = 0;
  const writer = (async () => {
    while (!stop) {
      const id = 1 + Math.floor(Math.random() * 30000);
      if (writes % 10 === 0) await ecom`DELETE FROM books WHERE id = ${id}`;
      else if (writes % 10 === 1) await ecom`INSERT INTO books (isbn, title, author, price) VALUES (${"n" + writes}, 'new', 'a', 1)`;
      else await ecom`UPDATE books SET price = price + 1, title = title || '+' WHERE id = ${id}`;
      writes++;
    }
  })();
  const run = await startDaemon(cfg);
  try {
    await new Promise((r) => setTimeout(r, 3000));
    stop = true;
    await writer;
    await same(ecom, analytics, "SELECT id, title, price FROM books ORDER BY id", 60_000);
  } finally {
    await run.stop();
  }
  expect(writes).toBeGreaterThan(100);
  await Promise.all([ecom.end(), inv.end(), analytics.end()]);
}, 120_000);

test("kill -9 and restart lose nothing and double nothing", async () => {
  const pg = await sharedCluster();
  const { ecom, inv, analytics, toml } = await sources(pg);
  const file = join(dir, "kill.toml");
  writeFileSync(file, toml);
  let stop = false;
  const writer = (async () => {
    let i = 0;
    while (!stop) {
      await ecom.begin(async (tx) => {
        const [o] = await tx`INSERT INTO orders (customer_id, status, total_amount) VALUES (${i}, 'paid', ${i % 1000}) RETURNING id`;
        if (i % 3 === 0) await tx`UPDATE orders SET status = 'shipped' WHERE id = ${o!.id - 1}`;
        if (i % 7 === 0) await tx`DELETE FROM orders WHERE id = ${o!.id - 2}`;
      });
      i++;
    }
  })();
  for (let round = 0; round < 3; round++) {
    const p = Bun.spawn([process.execPath, `${ROOT}src/main.ts`, "--config", file], { stdout: "ignore", stderr: "ignore" });
    await new Promise((r) => setTimeout(r, 1500 + Math.random() * 2000));
    p.kill(9);
    await p.exited;
  }
  stop = true;
  await writer;
  const p = Bun.spawn([process.execPath, `${ROOT}src/main.ts`, "--config", file], { stdout: "ignore", stderr: "ignore" });
  try {
    await same(ecom, analytics, "SELECT id, customer_id, status, total_amount FROM orders ORDER BY id", 60_000);
  } finally {
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  }
  await Promise.all([ecom.end(), inv.end(), analytics.end()]);
}, 180_000);

test("a snapshot a crash interrupted is copied again without the rows the source deleted since", async () => {
  const pg = await sharedCluster();
  const { ecom, inv, analytics, toml } = await sources(pg);
  const file = join(dir, "resnapshot.toml");
  // one source: its three tables are copied in order, and the failpoint's third pass is the last of them
  writeFileSync(file, toml.replace(/\[\[postgres_sources\]\]\nname = "inventory"[\s\S]*?(?=\[\[mappings\]\])/, "").replace(/\[\[mappings\]\]\nsource = "inventory"[\s\S]*$/, ""));
  await ecom.unsafe(`INSERT INTO books (isbn, title, author, price) SELECT g::text, 'b' || g, 'a', g % 100 FROM generate_series(1, 3000) g`);
  await ecom.unsafe(`INSERT INTO orders (customer_id, status, total_amount) SELECT g, 'paid', g % 500 FROM generate_series(1, 20000) g`);
  const run = (env: Record<string, string> = {}) => Bun.spawn([process.execPath, `${ROOT}src/main.ts`, "--config", file], { stdout: "ignore", stderr: "pipe", env: { ...process.env, ...env } });
  const first = run({ CDC_SINK_FAILPOINTS: "after-snapshot-table@3" });
  expect(await first.exited).not.toBe(0);
  expect(await new Response(first.stderr).text()).toContain('"failpoint":"after-snapshot-table"');
  expect((await analytics`SELECT count(*)::int AS n FROM fact_orders`)[0]!.n).toBe(20000);
  expect((await analytics`SELECT count(*)::int AS n FROM dim_books WHERE _cdc_deleted_at IS NULL`)[0]!.n).toBe(3000);
  expect((await analytics`SELECT count(*)::int AS n FROM cdc_sink.checkpoints WHERE part LIKE 'ecom%'`)[0]!.n).toBe(0);

  await ecom`DELETE FROM orders WHERE id % 3 = 0`;
  await ecom`UPDATE orders SET status = 'shipped' WHERE id % 3 = 1`;
  await ecom`DELETE FROM books WHERE id % 4 = 0`;
  // a row some other writer put there at a snapshot-like position: not this source's copy, never removed
  await analytics`INSERT INTO fact_order_items (id, quantity, _cdc_commit_lsn, _cdc_lsn) VALUES (424242, 1, 0, 12345)`;
  const second = run();
  try {
    await same(ecom, analytics, "SELECT id, customer_id, status, total_amount FROM orders ORDER BY id", 60_000);
    await same(ecom, analytics, "SELECT id, title, price FROM books ORDER BY id", 60_000);
    expect((await analytics`SELECT count(*)::int AS n FROM dim_books WHERE _cdc_deleted_at IS NOT NULL`)[0]!.n).toBe(750);
    expect((await analytics`SELECT count(*)::int AS n FROM fact_order_items`)[0]!.n).toBe(1);
    expect((await analytics`SELECT count(*)::int AS n FROM cdc_sink.snapshots WHERE stream LIKE 'pg:s_ecom_%'`)[0]!.n).toBe(2);
  } finally {
    second.kill("SIGTERM");
    await second.exited;
  }
  await Promise.all([ecom.end(), inv.end(), analytics.end()]);
}, 120_000);

test("a source restart mid-stream recovers", async () => {
  const src = await startCluster();
  const pg = await sharedCluster();
  const ecomUrl = await src.createDatabase("ecom");
  const ecom = postgres(ecomUrl, { max: 1, onnotice: () => {} });
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
  const run = await startDaemon(cfg);
  try {
    await ecom`INSERT INTO orders (customer_id) SELECT g FROM generate_series(1, 100) g`;
    await same(ecom, analytics, "SELECT id, customer_id FROM orders ORDER BY id");
    await ecom.end();
    src.stop();
    await new Promise((r) => setTimeout(r, 1000));
    src.start();
    const ecom2 = postgres(ecomUrl, { max: 1, onnotice: () => {} });
    await ecom2`INSERT INTO orders (customer_id) SELECT g FROM generate_series(101, 200) g`;
    await ecom2`DELETE FROM orders WHERE customer_id <= 10`;
    await same(ecom2, analytics, "SELECT id, customer_id FROM orders ORDER BY id", 60_000);
    await ecom2.end();
  } finally {
    await run.stop();
    src.kill();
  }
  await analytics.end();
}, 120_000);

test("wal_level not logical gives a clear error", async () => {
  const src = await startCluster({ settings: { wal_level: "replica" } });
  const ecomUrl = await src.createDatabase("ecom");
  const ecom = postgres(ecomUrl, { max: 1, onnotice: () => {} });
  await ecom.unsafe(readFileSync(`${ROOT}sql/ecom-ddl.sql`, "utf8"));
  await ecom.end();
  const pg = await sharedCluster();
  const analyticsUrl = await pg.createDatabase("analytics");
  await (await analyticsDb(analyticsUrl)).end();
  const file = join(dir, "replica.toml");
  writeFileSync(file, `[source]\nkind = "postgres"\n[postgres]\nurl = "${analyticsUrl}"\n[http]\nenabled = false\n[[postgres_sources]]\nname = "ecom"\nurl = "${ecomUrl}"\n[[mappings]]\nsource = "ecom"\nsource_table = "public.orders"\ntable = "fact_orders"\n`);
  try {
    for (const cmd of ["check", "run"]) {
      const p = Bun.spawn([process.execPath, `${ROOT}src/main.ts`, cmd, "--config", file], { stdout: "pipe", stderr: "pipe" });
      expect(await p.exited).not.toBe(0);
      const text = (await new Response(p.stdout).text()) + (await new Response(p.stderr).text());
      expect(text).toContain("wal_level is replica: set wal_level = logical");
    }
  } finally {
    src.kill();
  }
}, 60_000);

test("a column added at the source is ignored by default, and added to analytics where configured", async () => {
  const pg = await sharedCluster();
  for (const mode of ["ignore", "add"] as const) {
    const { ecom, inv, analytics, toml } = await sources(pg);
    const cfg = config(toml.replace('name = "ecom"', `name = "ecom"\nnew_columns = "${mode}"`));
    await ecom`INSERT INTO books (isbn, title, author, price) VALUES ('1', 'Dune', 'Herbert', 9.99)`;
    const run = await startDaemon(cfg);
    try {
      await same(ecom, analytics, "SELECT id, title FROM books ORDER BY id");
      await ecom`ALTER TABLE books ADD COLUMN subtitle text, ADD COLUMN pages integer`;
      await ecom`INSERT INTO books (isbn, title, author, price, subtitle, pages) VALUES ('2', 'Emma', 'Austen', 5, 'A Novel', 474)`;
      await ecom`UPDATE books SET title = 'Dune!' WHERE id = 1`;
      await same(ecom, analytics, "SELECT id, title FROM books ORDER BY id");
    } finally {
      await run.stop();
    }
    const cols = (await analytics`SELECT column_name FROM information_schema.columns WHERE table_name = 'dim_books' AND column_name IN ('subtitle', 'pages') ORDER BY 1`).map((r) => r.column_name);
    if (mode === "ignore") expect(cols).toEqual([]);
    else {
      expect(cols).toEqual(["pages", "subtitle"]);
      expect((await analytics`SELECT subtitle, pages FROM dim_books WHERE id = 2`).map((r) => ({ ...r }))).toEqual([{ subtitle: "A Novel", pages: 474 }]);
    }
    await Promise.all([ecom.end(), inv.end(), analytics.end()]);
  }
}, 120_000);

test("an update that leaves a TOASTed NOT NULL column unchanged updates the row and keeps the column", async () => {
  const pg = await sharedCluster();
  const { ecom, inv, analytics, cfg } = await sources(pg);
  await ecom`ALTER TABLE books ALTER COLUMN tags SET STORAGE EXTERNAL`;
  await analytics`ALTER TABLE dim_books ALTER COLUMN tags SET NOT NULL`;
  const run = await startDaemon(cfg);
  try {
    // uncompressed out of line: an UPDATE that does not touch it sends it as "unchanged" (pgoutput 'u')
    await ecom`INSERT INTO books (isbn, title, author, price, tags) SELECT 'big', 'Big', 'A', 1, array_agg(md5(i::text) || repeat('x', 100)) FROM generate_series(1, 100) i`;
    await waitFor("book", async () => (await analytics`SELECT 1 FROM dim_books`).length === 1);
    await ecom`UPDATE books SET title = 'Bigger' WHERE isbn = 'big'`;
    await waitFor("update", async () => (await analytics`SELECT title FROM dim_books`)[0]?.title === "Bigger");
  } finally {
    await run.stop();
  }
  const [src] = await ecom`SELECT md5(tags::text) AS h FROM books`;
  expect((await analytics`SELECT md5(tags::text) AS h FROM dim_books`)[0]!.h).toBe(src!.h);
  expect((await analytics`SELECT count(*)::int AS n FROM cdc_sink.dead_letters`)[0]!.n).toBe(0);
  await Promise.all([ecom.end(), inv.end(), analytics.end()]);
}, 120_000);

test("a second instance on the same slot waits as a standby, not ready, and takes over when the first stops", async () => {
  const pg = await sharedCluster();
  const { ecom, inv, analytics, cfg } = await sources(pg);
  const a = await startDaemon(cfg);
  let b: Awaited<ReturnType<typeof startDaemon>> | undefined;
  try {
    await ecom`INSERT INTO orders (customer_id) VALUES (1)`;
    await same(ecom, analytics, "SELECT id FROM orders ORDER BY id");
    b = await startDaemon(cfg);
    await waitFor("standby", async () => b!.metrics.standby.value({ slot: cfg.postgres_sources[0]!.slot! }) === 1);
    expect(b.daemon.readiness().join(" ")).toMatch(/standby: replication slot s_ecom_\w+ is active in another instance/);
    expect(a.daemon.readiness()).toEqual([]);
    await a.stop();
    const t0 = Date.now();
    await waitFor("takeover", async () => b!.daemon.readiness().length === 0, 10_000);
    const takeover = Date.now() - t0;
    expect(takeover).toBeLessThan(5000);
    await ecom`INSERT INTO orders (customer_id) VALUES (2)`;
    await inv`INSERT INTO inventory (book_id, quantity) VALUES (7, 7)`;
    await same(ecom, analytics, "SELECT id, customer_id FROM orders ORDER BY id");
    await same(inv, analytics, "SELECT book_id, quantity FROM inventory ORDER BY book_id");
    expect(b.metrics.standby.value({ slot: cfg.postgres_sources[0]!.slot! })).toBe(0);
  } finally {
    await a.stop().catch(() => {});
    await b?.stop();
  }
  await Promise.all([ecom.end(), inv.end(), analytics.end()]);
}, 120_000);

test("TRUNCATE follows the per-table setting", async () => {
  const pg = await sharedCluster();
  const { ecom, inv, analytics, toml } = await sources(pg);
  const cfg = config(toml.replace('table = "fact_inventory"', 'table = "fact_inventory"\ntruncate = "truncate"'));
  await inv`INSERT INTO inventory (book_id, quantity) VALUES (1, 1), (2, 2)`;
  await ecom`INSERT INTO orders (customer_id) VALUES (1), (2)`;
  const run = await startDaemon(cfg);
  try {
    await same(inv, analytics, "SELECT book_id, quantity FROM inventory ORDER BY book_id");
    await same(ecom, analytics, "SELECT id FROM orders ORDER BY id");
    await inv`TRUNCATE inventory`;
    await inv`INSERT INTO inventory (book_id, quantity) VALUES (3, 3)`;
    await ecom`TRUNCATE orders CASCADE`;
    await ecom`INSERT INTO orders (customer_id) VALUES (9)`;
    await same(inv, analytics, "SELECT book_id, quantity FROM inventory ORDER BY book_id");
    await waitFor("order 3", async () => (await analytics`SELECT 1 FROM fact_orders WHERE id = 3`).length === 1);
  } finally {
    await run.stop();
  }
  // fact_orders keeps its rows: its mapping ignores truncates (the default)
  expect((await analytics`SELECT id::int FROM fact_orders ORDER BY id`).map((r) => r.id)).toEqual([1, 2, 3]);
  await Promise.all([ecom.end(), inv.end(), analytics.end()]);
}, 120_000);

test("check reports the source's readiness, slot and publication, and the analytics tables", async () => {
  const pg = await sharedCluster();
  const { ecom, inv, analytics, toml } = await sources(pg);
  const file = join(dir, "check.toml");
  writeFileSync(file, toml);
  const runCheck = async () => {
    const p = Bun.spawn([process.execPath, `${ROOT}src/main.ts`, "check", "--config", file], { stdout: "pipe", stderr: "pipe" });
    return { code: await p.exited, out: await new Response(p.stdout).text() };
  };
  const first = await runCheck();
  expect(first.code).toBe(0);
  expect(first.out).toContain("ok   source ecom: wal_level logical");
  expect(first.out).toMatch(/slot s_ecom_\w+: missing, created on first run/);
  expect(first.out).toContain("ok   table fact_orders (key id;");
  await ecom`ALTER TABLE orders REPLICA IDENTITY NOTHING`;
  await analytics`ALTER TABLE fact_inventory DROP COLUMN _cdc_lsn`;
  const second = await runCheck();
  expect(second.code).toBe(1);
  expect(second.out).toContain("FAIL source ecom: public.orders has REPLICA IDENTITY NOTHING: deletes carry no key (ALTER TABLE public.orders REPLICA IDENTITY DEFAULT)");
  expect(second.out).toContain('FAIL fact_inventory: missing bookkeeping column _cdc_lsn (ALTER TABLE "fact_inventory" ADD COLUMN _cdc_lsn numeric(20,0))');
  await Promise.all([ecom.end(), inv.end(), analytics.end()]);
}, 60_000);
