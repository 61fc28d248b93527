// Schema changes at the source, per mapping policy (schema_changes = add | ignore | fail), for both
// sources, against real PostgreSQL and the mock Kafka cluster: columns added, safe widenings
// applied, anything else stopping that mapping only — its events held, not lost — and every
// change in cdc_sink.schema_log.
import { expect, test } from "bun:test";
import postgres, { type Sql } from "postgres";
import { envelope, keyOf, newClock, withSchema } from "./support/debezium.ts";
import { config, startDaemon, waitFor } from "./support/harness.ts";
import { sharedCluster } from "./support/pg.ts";
import { mockKafka } from "./support/kafka.ts";

const open = (url: string) => postgres(url, { max: 2, onnotice: () => {} });
const BOOK = "_cdc_commit_lsn numeric(20,0), _cdc_lsn numeric(20,0), _cdc_synced_at timestamptz";
const typeOf = async (sql: Sql, table: string, col: string) =>
  (await sql`SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = ${table}::regclass AND attname = ${col} AND NOT attisdropped`)[0]?.t as string | undefined;
const schemaLog = async (sql: Sql) => (await sql`SELECT tbl, col, change, action FROM cdc_sink.schema_log WHERE change <> 'create_table' ORDER BY id`).map((r) => `${r.tbl}.${r.col} ${r.change} ${r.action}`);
const rows = async (sql: Sql, q: string): Promise<Record<string, unknown>[]> => (await sql.unsafe(q)).map((r) => ({ ...r }));

let seq = 0;
/** A source database with tables a and b, their analytics tables, and a PostgreSQL-mode config. */
async function pgSetup(policyA: string, policyB = "ignore") {
  const pg = await sharedCluster();
  const srcUrl = await pg.createDatabase("scsrc");
  const dstUrl = await pg.createDatabase("scdst");
  const src = open(srcUrl);
  const dst = open(dstUrl);
  await src.unsafe(`CREATE TABLE a (id bigint PRIMARY KEY, code varchar(20), qty integer, amount numeric(12,2), v integer);
    CREATE TABLE b (id bigint PRIMARY KEY, name text)`);
  await dst.unsafe(`CREATE TABLE a_fact (id bigint PRIMARY KEY, code varchar(20), qty integer, amount numeric(12,2), v integer, ${BOOK});
    CREATE TABLE b_fact (id bigint PRIMARY KEY, name text, ${BOOK})`);
  const n = `${++seq}_${Math.random().toString(36).slice(2, 6)}`;
  const toml = `
[source]
kind = "postgres"
[postgres]
url = "${dstUrl}"
[http]
enabled = false
[[postgres_sources]]
name = "src"
url = "${srcUrl}"
slot = "sc_${n}"
[[mappings]]
source = "src"
source_table = "public.a"
table = "a_fact"
schema_changes = "${policyA}"
[[mappings]]
source = "src"
source_table = "public.b"
table = "b_fact"
schema_changes = "${policyB}"
`;
  return { src, dst, cfg: config(toml) };
}

test('PostgreSQL source, schema_changes = "add": a new column is added, varchar, integer and numeric widened, values beyond the old types replicate', async () => {
  const { src, dst, cfg } = await pgSetup("add");
  await src`INSERT INTO a VALUES (1, 'short', 1, 1.5, 1)`;
  const run = await startDaemon(cfg);
  try {
    await waitFor("the first row", async () => (await dst`SELECT count(*)::int AS n FROM a_fact`)[0]!.n === 1);
    await src.unsafe(`ALTER TABLE a ADD COLUMN note varchar(30), ALTER COLUMN code TYPE varchar(50), ALTER COLUMN qty TYPE bigint, ALTER COLUMN amount TYPE numeric(14,2)`);
    await src`INSERT INTO a VALUES (2, ${"c".repeat(45)}, 5000000000, 123456789012.34, 2, 'a note')`;
    await waitFor("the row past the old types", async () => (await dst`SELECT count(*)::int AS n FROM a_fact`)[0]!.n === 2);
    const metrics = run.metrics.registry.render();
    expect(metrics).toContain('cdc_sink_schema_changes_total{table="a_fact",action="widened"} 3');
    expect(metrics).toContain('cdc_sink_schema_changes_total{table="a_fact",action="added"} 1');
    expect(metrics).toContain('cdc_sink_mapping_stopped{table="a_fact"} 0');
  } finally {
    await run.stop();
  }
  expect(await rows(dst, "SELECT code, qty::text, amount::text, note FROM a_fact WHERE id = 2")).toEqual([{ code: "c".repeat(45), qty: "5000000000", amount: "123456789012.34", note: "a note" }]);
  expect([await typeOf(dst, "a_fact", "code"), await typeOf(dst, "a_fact", "qty"), await typeOf(dst, "a_fact", "amount"), await typeOf(dst, "a_fact", "note")]).toEqual(["character varying(50)", "bigint", "numeric(14,2)", "character varying(30)"]);
  expect(await schemaLog(dst)).toEqual(["a_fact.code type_change widened", "a_fact.qty type_change widened", "a_fact.amount type_change widened", "a_fact.note new_column added"]);
  const [w] = await dst`SELECT statement, old_type, new_type, policy FROM cdc_sink.schema_log WHERE col = 'qty'`;
  expect({ ...w }).toEqual({ statement: 'ALTER TABLE "a_fact" ALTER COLUMN "qty" TYPE bigint', old_type: "integer", new_type: "bigint", policy: "add" });
  await Promise.all([src.end(), dst.end()]);
}, 120_000);

test("PostgreSQL source: a change no widening makes safe stops that mapping only; its changes are held, not lost, and applied after the table is fixed and the daemon restarted", async () => {
  const { src, dst, cfg } = await pgSetup("add");
  await src`INSERT INTO a VALUES (1, 'x', 1, 1, 1)`;
  await src`INSERT INTO b VALUES (1, 'one')`;
  let run = await startDaemon(cfg, { verbose: !!process.env.VERBOSE });
  try {
    await waitFor("both tables", async () => (await dst`SELECT (SELECT count(*) FROM a_fact) + (SELECT count(*) FROM b_fact) AS n`)[0]!.n === "2");
    // streamed (the first rows came with the snapshot): the relation is seen with v integer
    await src`UPDATE a SET code = 'streamed' WHERE id = 1`;
    await waitFor("the streamed update", async () => (await dst`SELECT code FROM a_fact WHERE id = 1`)[0]?.code === "streamed");
    await src`ALTER TABLE a ALTER COLUMN v TYPE text USING v::text`;
    await src`INSERT INTO a VALUES (2, 'y', 2, 2, 'not a number')`;
    await src`INSERT INTO b VALUES (2, 'two')`;
    await src`INSERT INTO b VALUES (3, 'three')`;
    await waitFor("b going on", async () => (await dst`SELECT count(*)::int AS n FROM b_fact`)[0]!.n === 3);
    await waitFor("the stop in the metrics", async () => run.metrics.registry.render().includes('cdc_sink_mapping_stopped{table="a_fact"} 1'));
    expect(run.metrics.registry.render()).toContain('cdc_sink_schema_changes_total{table="a_fact",action="refused"} 1');
    expect(run.daemon.readiness()).toEqual([]);
  } finally {
    await run.stop();
  }
  expect((await dst`SELECT count(*)::int AS n FROM a_fact`)[0]!.n).toBe(1);
  const [refused] = await dst`SELECT col, source_type, old_type, action FROM cdc_sink.schema_log WHERE action = 'refused'`;
  expect({ ...refused }).toEqual({ col: "v", source_type: "text", old_type: "integer", action: "refused" });
  // a restart without a fix stops it again, and still loses nothing
  run = await startDaemon(cfg);
  try {
    await waitFor("stopped again", async () => run.metrics.registry.render().includes('cdc_sink_mapping_stopped{table="a_fact"} 1'));
  } finally {
    await run.stop();
  }
  await dst`ALTER TABLE a_fact ALTER COLUMN v TYPE text`;
  run = await startDaemon(cfg);
  try {
    await waitFor("the held change", async () => (await dst`SELECT v FROM a_fact WHERE id = 2`)[0]?.v === "not a number");
    await src`INSERT INTO b VALUES (4, 'four')`;
    await waitFor("b after the restart", async () => (await dst`SELECT count(*)::int AS n FROM b_fact`)[0]!.n === 4);
    expect(run.metrics.registry.render()).toContain('cdc_sink_mapping_stopped{table="a_fact"} 0');
  } finally {
    await run.stop();
  }
  expect(await rows(dst, "SELECT id::int, name FROM b_fact ORDER BY id")).toEqual([
    { id: 1, name: "one" },
    { id: 2, name: "two" },
    { id: 3, name: "three" },
    { id: 4, name: "four" },
  ]);
  expect((await schemaLog(dst)).slice(-1)).toEqual(["a_fact.v type_change accepted"]);
  await Promise.all([src.end(), dst.end()]);
}, 120_000);

test('PostgreSQL source: "fail" stops on a new column; "ignore" leaves the table alone; a widening a view blocks stops the mapping with the database\'s reason', async () => {
  const { src, dst, cfg } = await pgSetup("fail", "ignore");
  await dst`CREATE VIEW a_codes AS SELECT code FROM a_fact`;
  await src`INSERT INTO a VALUES (1, 'x', 1, 1, 1)`;
  await src`INSERT INTO b VALUES (1, 'one')`;
  const run = await startDaemon(cfg);
  try {
    await waitFor("first rows", async () => (await dst`SELECT (SELECT count(*) FROM a_fact) + (SELECT count(*) FROM b_fact) AS n`)[0]!.n === "2");
    await src`UPDATE a SET code = 'streamed'`;
    await waitFor("the streamed update", async () => (await dst`SELECT code FROM a_fact WHERE id = 1`)[0]?.code === "streamed");
    await src`ALTER TABLE a ADD COLUMN extra text`;
    await src`ALTER TABLE b ADD COLUMN extra text`;
    await src`INSERT INTO a VALUES (2, 'y', 2, 2, 2, 'e')`;
    await src`INSERT INTO b VALUES (2, 'two', 'e')`;
    await waitFor("b going on", async () => (await dst`SELECT count(*)::int AS n FROM b_fact`)[0]!.n === 2);
    await waitFor("a stopped", async () => run.metrics.registry.render().includes('cdc_sink_mapping_stopped{table="a_fact"} 1'));
  } finally {
    await run.stop();
  }
  expect(await typeOf(dst, "b_fact", "extra")).toBeUndefined();
  expect(await typeOf(dst, "a_fact", "extra")).toBeUndefined();
  expect(await schemaLog(dst)).toEqual(["a_fact.extra new_column refused", "b_fact.extra new_column ignored"]);

  // "add" with a view over the column: the widening fails, the mapping stops naming why
  const add = await pgSetup("add");
  await add.dst`CREATE VIEW a_codes AS SELECT code FROM a_fact`;
  await add.src`INSERT INTO a VALUES (1, 'x', 1, 1, 1)`;
  const run2 = await startDaemon(add.cfg);
  try {
    await waitFor("first row", async () => (await add.dst`SELECT count(*)::int AS n FROM a_fact`)[0]!.n === 1);
    await add.src`ALTER TABLE a ALTER COLUMN code TYPE varchar(40)`;
    await add.src`INSERT INTO a VALUES (2, ${"y".repeat(30)}, 2, 2, 2)`;
    await waitFor("a stopped", async () => run2.metrics.registry.render().includes('cdc_sink_mapping_stopped{table="a_fact"} 1'));
  } finally {
    await run2.stop();
  }
  expect((await add.dst`SELECT count(*)::int AS n FROM a_fact`)[0]!.n).toBe(1);
  const [why] = await add.dst`SELECT action, detail FROM cdc_sink.schema_log WHERE col = 'code'`;
  expect(why!.action).toBe("refused");
  expect(why!.detail).toContain('ALTER TABLE "a_fact" ALTER COLUMN "code" TYPE character varying(40) failed: cannot alter type of a column used by a view or rule');
  await Promise.all([src.end(), dst.end(), add.src.end(), add.dst.end()]);
}, 120_000);

const kafka = mockKafka();

async function kafkaSetup(policy: string) {
  const pg = await sharedCluster();
  const url = await pg.createDatabase("sck");
  const dst = open(url);
  await dst.unsafe(`CREATE TABLE items_fact (id bigint PRIMARY KEY, name text, qty integer, ${BOOK});
    CREATE TABLE plain_fact (id bigint PRIMARY KEY, name text, ${BOOK})`);
  const n = ++seq;
  const items = `sc${n}.public.items`;
  const plain = `sc${n}.public.plain`;
  kafka.mock.createTopic(items, 2);
  kafka.mock.createTopic(plain, 1);
  const cfg = config(`
[kafka]
bootstrap_servers = "${kafka.mock.bootstrapServers}"
group_id = "sc${n}"
[kafka.properties]
"fetch.wait.max.ms" = 10
[postgres]
url = "${url}"
[http]
enabled = false
[[mappings]]
topic = "${items}"
table = "items_fact"
schema_changes = "${policy}"
[[mappings]]
topic = "${plain}"
table = "plain_fact"
schema_changes = "${policy}"
`);
  const send = async (topic: string, msgs: Array<{ key: string; value: unknown }>) => {
    await kafka.producer.produce(topic, msgs.map((m) => ({ key: m.key, value: JSON.stringify(m.value) })));
    expect((await kafka.producer.flush(10_000)).failed).toEqual([]);
  };
  return { dst, cfg, items, plain, send };
}

const ITEM_FIELDS = { id: { type: "int64" }, name: { type: "string" }, qty: { type: "int32" } };

test('Kafka, schema_changes = "add": a new field of the message schema is added with its type, int32 -> int64 widened; a schemaless field is ignored once, with a warning and a metric', async () => {
  const { dst, cfg, items, plain, send } = await kafkaSetup("add");
  const clock = newClock();
  const item = (id: number, extra: Record<string, unknown> = {}) => ({ id, name: `n${id}`, qty: 1, ...extra });
  await send(items, [{ key: keyOf(1, "id", true), value: withSchema(envelope(clock, "items", "c", { after: item(1) }), ITEM_FIELDS) }]);
  // a field name PostgreSQL text cannot hold (NUL) is recorded with U+FFFD, and never stalls the stream
  await send(plain, [{ key: keyOf(1), value: envelope(clock, "plain", "c", { after: { id: 1, name: "p", colour: "red", "x\u0000y": 1 } }) }, { key: keyOf(2), value: envelope(clock, "plain", "c", { after: { id: 2, name: "q", colour: "blue" } }) }]);
  const run = await startDaemon(cfg);
  try {
    await waitFor("first rows", async () => (await dst`SELECT (SELECT count(*) FROM items_fact) + (SELECT count(*) FROM plain_fact) AS n`)[0]!.n === "3");
    const wider = { ...ITEM_FIELDS, qty: { type: "int64" }, price: { type: "bytes", name: "org.apache.kafka.connect.data.Decimal", parameters: { scale: "2", "connect.decimal.precision": "10" } } };
    await send(items, [{ key: keyOf(2, "id", true), value: withSchema(envelope(clock, "items", "c", { after: item(2, { qty: 2 ** 40, price: "MDk=" }) }), wider) }]);
    await waitFor("the row past the old type", async () => (await dst`SELECT qty::text FROM items_fact WHERE id = 2`)[0]?.qty === String(2 ** 40));
    const metrics = run.metrics.registry.render();
    expect(metrics).toContain('cdc_sink_schema_changes_total{table="plain_fact",action="ignored"} 2');
    expect(metrics).toContain('cdc_sink_schema_changes_total{table="items_fact",action="widened"} 1');
  } finally {
    await run.stop();
  }
  expect([await typeOf(dst, "items_fact", "qty"), await typeOf(dst, "items_fact", "price"), await typeOf(dst, "plain_fact", "colour")]).toEqual(["bigint", "numeric(10,2)", undefined]);
  expect(await rows(dst, "SELECT price::text FROM items_fact WHERE id = 2")).toEqual([{ price: "123.45" }]);
  expect(await schemaLog(dst)).toEqual(["plain_fact.colour new_column ignored", "plain_fact.x\uFFFDy new_column ignored", "items_fact.qty type_change widened", "items_fact.price new_column added"]);
  await dst.end();
}, 120_000);

test("Kafka: a field retyped beyond a safe widening stops that topic's mapping; its partition's checkpoint stays at the first held record; after the fix and a restart it is applied", async () => {
  const { dst, cfg, items, plain, send } = await kafkaSetup("add");
  const clock = newClock();
  await send(items, [{ key: keyOf(1, "id", true), value: withSchema(envelope(clock, "items", "c", { after: { id: 1, name: "a", qty: 1 } }), ITEM_FIELDS) }]);
  let run = await startDaemon(cfg);
  try {
    await waitFor("first row", async () => (await dst`SELECT count(*)::int AS n FROM items_fact`)[0]!.n === 1);
    const text = { ...ITEM_FIELDS, qty: { type: "string" } };
    await send(items, [{ key: keyOf(2, "id", true), value: withSchema(envelope(clock, "items", "c", { after: { id: 2, name: "b", qty: "a dozen" } }), text) }]);
    await send(items, [{ key: keyOf(3, "id", true), value: withSchema(envelope(clock, "items", "c", { after: { id: 3, name: "c", qty: "two" } }), text) }]);
    await send(plain, [{ key: keyOf(1), value: envelope(clock, "plain", "c", { after: { id: 1, name: "p" } }) }]);
    await waitFor("the other topic going on", async () => (await dst`SELECT count(*)::int AS n FROM plain_fact`)[0]!.n === 1);
    await waitFor("stopped", async () => run.metrics.registry.render().includes('cdc_sink_mapping_stopped{table="items_fact"} 1'));
  } finally {
    await run.stop();
  }
  expect((await dst`SELECT count(*)::int AS n FROM items_fact`)[0]!.n).toBe(1);
  const held = await dst`SELECT part, position::int FROM cdc_sink.checkpoints WHERE part LIKE ${`${items}/%`} ORDER BY part`;
  const firstHeld = held.find((h) => h.position === 1);
  expect(firstHeld).toBeDefined();
  await dst`ALTER TABLE items_fact ALTER COLUMN qty TYPE text`;
  run = await startDaemon(cfg);
  try {
    await waitFor("the held records", async () => (await dst`SELECT count(*)::int AS n FROM items_fact`)[0]!.n === 3);
  } finally {
    await run.stop();
  }
  expect(await rows(dst, "SELECT id::int, qty FROM items_fact ORDER BY id")).toEqual([
    { id: 1, qty: "1" },
    { id: 2, qty: "a dozen" },
    { id: 3, qty: "two" },
  ]);
  await dst.end();
}, 120_000);
