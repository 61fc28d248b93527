// cdc-sink init and [postgres] auto_provision against real PostgreSQL (and the mock Kafka cluster):
// analytics tables derived from the source catalog or the message schema, applied, replicated into.
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres, { type Sql } from "postgres";
import { runInit } from "../src/provision/cli.ts";
import { tempDir } from "./support/cleanup.ts";
import { envelope, keyOf, newClock, withSchema } from "./support/debezium.ts";
import { config, ROOT, startDaemon, waitFor } from "./support/harness.ts";
import { sharedCluster } from "./support/pg.ts";
import { mockKafka } from "./support/kafka.ts";

const dir = tempDir("cdc-sink-provision-");
const kafka = mockKafka();

const open = (url: string) => postgres(url, { max: 2, onnotice: () => {} });
const typesOf = async (sql: Sql, table: string) =>
  Object.fromEntries(
    (await sql`SELECT attname, format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = ${table}::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`).map((r) => [r.attname, r.t]),
  );
const keyOf_ = async (sql: Sql, table: string) =>
  (await sql`SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = ${table}::regclass AND i.indisprimary`).map((r) => r.attname);

/** Runs init in-process, capturing what it prints. */
async function init(toml: string, apply = false) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runInit(config(toml), { apply, print: (l) => out.push(l), err: (l) => err.push(l), sampleTimeoutMs: 15_000 });
  return { code, sql: out.join("\n"), err: err.join("\n") };
}

const SOURCE_DDL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE things (
  id      bigint PRIMARY KEY,
  code    varchar(20) NOT NULL,
  amount  numeric(12,2) DEFAULT 0,
  tags    text[],
  m       mood,
  ms      mood[],
  qty     posint,
  at      timestamptz(3),
  big     numeric,
  gen     integer GENERATED ALWAYS AS (1) STORED,
  "order" text
);
CREATE TABLE legacy (id integer PRIMARY KEY, name text);
CREATE TABLE nokey (a integer, b text);`;

async function pgSetup(extra = "") {
  const pg = await sharedCluster();
  const srcUrl = await pg.createDatabase("src");
  const dstUrl = await pg.createDatabase("dst");
  const src = open(srcUrl);
  const dst = open(dstUrl);
  await src.unsafe(SOURCE_DDL);
  const toml = `
[source]
kind = "postgres"
[postgres]
url = "${dstUrl}"
${extra}
[[postgres_sources]]
name = "src"
url = "${srcUrl}"
[[mappings]]
source = "src"
source_table = "public.things"
table = "things_fact"
delete_mode = "soft"
[[mappings]]
source = "src"
source_table = "public.legacy"
table = "legacy"
rename = { name = "label" }
`;
  return { src, dst, toml, srcUrl, dstUrl };
}

test("init derives a missing table from the PostgreSQL source's catalog and adds what an existing one lacks; --apply runs it, a second run has nothing to do", async () => {
  const { src, dst, toml } = await pgSetup();
  await dst`CREATE TABLE legacy (id integer PRIMARY KEY, label text)`;
  const printed = await init(toml);
  expect(printed.code).toBe(1);
  expect(printed.sql).toContain("-- things_fact <- src:public.things: columns from the catalog of src:public.things");
  expect(printed.sql).toContain("--   m: enum public.mood stored as text");
  expect(printed.sql).toMatch(/\n  "order" +text,\n/);
  expect(printed.sql).toContain("PRIMARY KEY (id)");
  expect(printed.sql).toContain("ALTER TABLE legacy\n  ADD COLUMN IF NOT EXISTS _cdc_commit_lsn numeric(20,0)");
  expect(printed.err).toContain("2 table(s) need DDL");
  // printing changed nothing
  expect((await dst`SELECT to_regclass('things_fact') AS t`)[0]!.t).toBeNull();

  const applied = await init(toml, true);
  expect(applied.code).toBe(0);
  expect(await typesOf(dst, "things_fact")).toEqual({
    id: "bigint",
    code: "character varying(20)",
    amount: "numeric(12,2)",
    tags: "text[]",
    m: "text",
    ms: "text[]",
    qty: "integer",
    at: "timestamp(3) with time zone",
    big: "numeric",
    order: "text",
    _cdc_commit_lsn: "numeric(20,0)",
    _cdc_lsn: "numeric(20,0)",
    _cdc_synced_at: "timestamp with time zone",
    _cdc_deleted_at: "timestamp with time zone",
  });
  expect(await keyOf_(dst, "things_fact")).toEqual(["id"]);
  // nothing but NOT NULL of the key: events arrive in any order, updates may leave columns out
  expect((await dst`SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = 'things_fact'::regclass AND attnum > 0 AND attnotnull AND attname <> 'id'`)[0]!.n).toBe(0);
  expect(await typesOf(dst, "legacy")).toEqual({ id: "integer", label: "text", _cdc_commit_lsn: "numeric(20,0)", _cdc_lsn: "numeric(20,0)", _cdc_synced_at: "timestamp with time zone" });
  const log = await dst`SELECT tbl, col, change, action FROM cdc_sink.schema_log ORDER BY id`;
  expect(log.map((r) => `${r.tbl}.${r.col ?? "*"} ${r.change} ${r.action}`)).toEqual([
    "things_fact.* create_table created",
    "legacy._cdc_commit_lsn bookkeeping added",
    "legacy._cdc_lsn bookkeeping added",
    "legacy._cdc_synced_at bookkeeping added",
  ]);

  const again = await init(toml);
  expect(again.code).toBe(0);
  expect(again.sql).toBe("");
  expect(again.err).toContain("nothing to do");
  await Promise.all([src.end(), dst.end()]);
}, 60_000);

test("provision_enums = \"type\" creates the enum type in analytics; a source table without a key and one that does not exist are named, with exit 1", async () => {
  const { src, dst, toml } = await pgSetup('provision_enums = "type"');
  const withBad = `${toml}
[[mappings]]
source = "src"
source_table = "public.nokey"
table = "nokey_fact"
[[mappings]]
source = "src"
source_table = "public.nothere"
table = "nothere_fact"
`;
  const r = await init(withBad, true);
  expect(r.code).toBe(1);
  expect(r.err).toContain("nokey_fact: the source has no primary key (nor replica identity index) to make the table's key: set key = [...] in the mapping");
  expect(r.err).toContain("nothere_fact: does not exist and cannot be derived: source src has no table public.nothere");
  // what could be done was done
  expect((await typesOf(dst, "things_fact")).m).toBe("mood");
  expect((await typesOf(dst, "things_fact")).ms).toBe("mood[]");
  expect((await dst`SELECT enum_range(NULL::mood)::text AS r`)[0]!.r).toBe("{sad,ok,happy}");
  // with a key configured it can be made
  const keyed = await init(withBad.replace('table = "nokey_fact"', 'table = "nokey_fact"\nkey = ["a"]'), true);
  expect(keyed.err).toContain("init: applied nokey_fact");
  expect(await keyOf_(dst, "nokey_fact")).toEqual(["a"]);
  await Promise.all([src.end(), dst.end()]);
}, 60_000);

test("auto_provision: the daemon creates the demo's four tables from the source catalogs at start and replicates into them", async () => {
  const pg = await sharedCluster();
  const ecomUrl = await pg.createDatabase("ecom");
  const invUrl = await pg.createDatabase("inventory");
  const analyticsUrl = await pg.createDatabase("analytics");
  const ecom = open(ecomUrl);
  const inv = open(invUrl);
  const dst = open(analyticsUrl);
  await ecom.unsafe(readFileSync(`${ROOT}sql/ecom-ddl.sql`, "utf8"));
  await inv.unsafe(readFileSync(`${ROOT}sql/inventory-ddl.sql`, "utf8"));
  await ecom`INSERT INTO books (isbn, title, author, price, tags) VALUES ('1', 'Dune', 'Herbert', 9.99, '{sf}')`;
  const n = Math.random().toString(36).slice(2, 8);
  const toml = readFileSync(`${ROOT}sink.postgres.toml`, "utf8")
    .replace("postgres://cdc_sink@analytics-db:5432/analytics", `${analyticsUrl}"\nauto_provision = true\n#"`)
    .replace("postgres://cdc_sink@ecom-db:5432/ecom", `${ecomUrl}"\nslot = "s_ecom_${n}`)
    .replace("postgres://cdc_sink@inventory-db:5432/inventory", `${invUrl}"\nslot = "s_inv_${n}`)
    .replace('listen = "0.0.0.0:8080"', "enabled = false");
  const run = await startDaemon(config(toml));
  try {
    await waitFor("the snapshot in the provisioned table", async () => (await dst`SELECT title FROM dim_books WHERE _cdc_deleted_at IS NULL`.catch(() => []))[0]?.title === "Dune");
    await ecom`INSERT INTO orders (customer_id, status, total_amount) VALUES (1, 'paid', 15.49)`;
    await inv`INSERT INTO inventory (book_id, quantity) VALUES (1, 10)`;
    await waitFor("streamed changes", async () => (await dst`SELECT count(*)::int AS n FROM fact_orders`)[0]!.n === 1 && (await dst`SELECT count(*)::int AS n FROM fact_inventory`)[0]!.n === 1);
  } finally {
    await run.stop();
  }
  expect((await typesOf(dst, "dim_books")).price).toBe("numeric(12,2)");
  expect((await typesOf(dst, "fact_orders")).total_amount).toBe("numeric(12,2)");
  expect(Object.keys(await typesOf(dst, "dim_books"))).toContain("_cdc_deleted_at");
  expect(Object.keys(await typesOf(dst, "fact_orders"))).not.toContain("_cdc_deleted_at");
  expect((await dst`SELECT total_amount::text AS a FROM fact_orders`)[0]!.a).toBe("15.49");
  await Promise.all([ecom.end(), inv.end(), dst.end()]);
}, 120_000);

test("Kafka mode: init derives the table from the newest event's schema; schemaless events get a message saying what is needed; the CLI exits 1, 0 and 64", async () => {
  const pg = await sharedCluster();
  const url = await pg.createDatabase("kinit");
  const dst = open(url);
  const topic = `k${Date.now()}.public.books`;
  const bare = `k${Date.now()}.public.bare`;
  kafka.mock.createTopic(topic, 2);
  kafka.mock.createTopic(bare, 1);
  const clock = newClock();
  const fields = {
    id: { type: "int64" },
    title: { type: "string" },
    price: { type: "bytes", name: "org.apache.kafka.connect.data.Decimal", parameters: { scale: "2", "connect.decimal.precision": "12" } },
    published_on: { type: "int32", name: "io.debezium.time.Date" },
    tags: { type: "array" },
    attributes: { type: "string", name: "io.debezium.data.Json" },
    created_at: { type: "string", name: "io.debezium.time.ZonedTimestamp" },
  };
  (fields.tags as Record<string, unknown>).items = { type: "string", optional: true };
  const book = { id: 9, title: "Dune", price: "B9A=", published_on: 19723, tags: ["sf"], attributes: '{"pages": 412}', created_at: "2024-01-01T00:00:00Z" };
  await kafka.producer.produce(topic, [
    { key: keyOf(9, "id", true), value: JSON.stringify(withSchema(envelope(clock, "books", "c", { after: book }), fields)) },
    { key: keyOf(9, "id", true), value: JSON.stringify(withSchema(envelope(clock, "books", "u", { after: { ...book, title: "Dune!" } }), fields)) },
  ]);
  await kafka.producer.produce(bare, [{ key: keyOf(1), value: JSON.stringify(envelope(clock, "bare", "c", { after: { id: 1 } })) }]);
  expect((await kafka.producer.flush(10_000)).failed).toEqual([]);
  const toml = `
[kafka]
bootstrap_servers = "${kafka.mock.bootstrapServers}"
group_id = "kinit"
[kafka.properties]
"fetch.wait.max.ms" = 10
[postgres]
url = "${url}"
[http]
enabled = false
[[mappings]]
topic = "${topic}"
table = "books_fact"
[[mappings]]
topic = "${bare}"
table = "bare_fact"
`;
  const file = join(dir, "kinit.toml");
  writeFileSync(file, toml);
  const cli = (...args: string[]) => spawnSync("bun", [`${ROOT}src/main.ts`, ...args], { encoding: "utf8", timeout: 60_000 });
  const printed = cli("init", "--config", file);
  expect(printed.status).toBe(1);
  expect(printed.stdout).toContain(`-- books_fact <- ${topic}: columns from the message schema of topic ${topic}`);
  expect(printed.stderr).toContain(`bare_fact: does not exist and cannot be derived: the events of topic ${bare} carry no schema (the connector runs with value.converter.schemas.enable=false); set verify_source`);
  expect(cli("init", "--config", file, "--id", "3").status).toBe(64);
  const applied = await init(toml.replace(/\[\[mappings\]\]\ntopic = "k\d+\.public\.bare"\ntable = "bare_fact"\n/, ""), true);
  expect(applied.code).toBe(0);
  expect(await typesOf(dst, "books_fact")).toEqual({
    id: "bigint",
    title: "text",
    price: "numeric(12,2)",
    published_on: "date",
    tags: "text[]",
    attributes: "jsonb",
    created_at: "timestamp with time zone",
    _cdc_commit_lsn: "numeric(20,0)",
    _cdc_lsn: "numeric(20,0)",
    _cdc_synced_at: "timestamp with time zone",
  });
  expect(await keyOf_(dst, "books_fact")).toEqual(["id"]);
  // and the daemon applies the topic into it
  const run = await startDaemon(config(toml.replace(/\[\[mappings\]\]\ntopic = "k\d+\.public\.bare"\ntable = "bare_fact"\n/, "")));
  try {
    await waitFor("the update", async () => (await dst`SELECT title FROM books_fact`)[0]?.title === "Dune!");
  } finally {
    await run.stop();
  }
  expect((await dst`SELECT price::text AS p, published_on::text AS d, tags, attributes FROM books_fact`).map((r) => ({ ...r }))).toEqual([{ p: "20.00", d: "2024-01-01", tags: ["sf"], attributes: { pages: 412 } }]);
  await dst.end();
}, 120_000);
