// The applier against a real PostgreSQL: array parameters, and a batch another member partly applied.
import { expect, test } from "bun:test";
import { ChangeBatch } from "../src/batch.ts";
import { decodeDebezium } from "../src/decode/debezium.ts";
import { silentLogger } from "../src/log.ts";
import { createMetrics } from "../src/metrics.ts";
import type { Coord } from "../src/model.ts";
import { createApplier } from "../src/sink/apply.ts";
import { textArray } from "../src/sink/pgarray.ts";
import { Fenced, Fences } from "../src/sink/fence.ts";
import { createCheckpointStore, ensureStateTables } from "../src/sink/state.ts";
import { loadTargets } from "../src/sink/targets.ts";
import { envelope, keyOf, newClock } from "./support/debezium.ts";
import { analyticsDb, config, sinkToml } from "./support/harness.ts";
import { sharedCluster } from "./support/pg.ts";

async function setup() {
  const pg = await sharedCluster();
  const url = await pg.createDatabase("apply");
  const sql = await analyticsDb(url);
  const cfg = config(sinkToml({ bootstrap: "127.0.0.1:9", db: url, group: "g" }));
  await ensureStateTables(sql, cfg.postgres.state_schema);
  const targets = await loadTargets(sql, cfg.mappings);
  return { sql, orders: targets.find((t) => t.table.name === "fact_orders")!, cfg };
}

test("text[] parameters built by the applier read back unchanged", async () => {
  const { sql } = await setup();
  const values = ["plain", "", "NULL", null, 'a "quoted" word', "back\\slash\\", "{braces},commas", "  spaces  ", "tab\tnew\nline", "ünïcødé €", "\\\"", "}"];
  // read back as rows: postgres.js's own array result parser does not turn NULL into null
  const rows = await sql.unsafe("SELECT v FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i) ORDER BY i", [textArray(values.length, (i) => values[i]!)] as never[]);
  expect(rows.map((r) => r.v)).toEqual(values);
  await sql.end();
});

test("a batch another member partly applied is applied only from where that member's checkpoint stands", async () => {
  const { sql, orders } = await setup();
  const metrics = createMetrics();
  const apply = createApplier({ sql, stateSchema: "cdc_sink", metrics, log: silentLogger });
  const clock = newClock();
  const part = "orders/0";
  const batch = new ChangeBatch({ maxEvents: 100, maxBytes: 1 << 20, maxLatencyMs: 50 });
  const now = Date.now();
  for (let offset = 10; offset < 14; offset++) {
    const coord: Coord = { stream: "kafka:g", part, position: BigInt(offset) };
    batch.advance(coord, BigInt(offset + 1), 100, now);
    if (offset === 11) {
      batch.deadLetter({ coord, table: "fact_orders", stage: "decode", key: null, value: "not json", error: "invalid JSON", code: "DECODE" });
      continue;
    }
    const value = JSON.stringify(envelope(clock, "orders", "c", { after: { id: offset, customer_id: 1, status: "paid", total_amount: 1.5 } }));
    batch.add(decodeDebezium(orders, keyOf(offset), value, coord)!, now);
  }
  // the other member committed offsets 10..12 (it wrote its own rows; here only its checkpoint)
  await sql`INSERT INTO cdc_sink.checkpoints (stream, part, position) VALUES ('kafka:g', ${part}, 13)`;

  const r = await apply(batch);
  expect((await sql`SELECT id FROM fact_orders ORDER BY id`).map((x) => Number(x.id))).toEqual([13]);
  expect(Number((await sql`SELECT count(*) FROM cdc_sink.dead_letters`)[0]!.count)).toBe(0);
  expect(r.applied).toBe(1);
  expect(r.parts.find((p) => p.part === part)!.next).toBe(14n);
  expect(Number((await sql`SELECT position FROM cdc_sink.checkpoints WHERE part = ${part}`)[0]!.position)).toBe(14);
  expect(metrics.rowsApplied.value({ table: "fact_orders", op: "upsert" })).toBe(1);
  await sql.end();
});

test("a batch nobody applied before is applied whole, with its dead letters and checkpoint", async () => {
  const { sql, orders } = await setup();
  const apply = createApplier({ sql, stateSchema: "cdc_sink", log: silentLogger });
  const clock = newClock();
  const batch = new ChangeBatch({ maxEvents: 100, maxBytes: 1 << 20, maxLatencyMs: 50 });
  const now = Date.now();
  for (let offset = 0; offset < 3; offset++) {
    const coord: Coord = { stream: "kafka:g", part: "orders/1", position: BigInt(offset) };
    batch.advance(coord, BigInt(offset + 1), 100, now);
    if (offset === 1) batch.deadLetter({ coord, table: "fact_orders", stage: "decode", key: null, value: "x", error: "invalid JSON", code: "DECODE" });
    else batch.add(decodeDebezium(orders, keyOf(offset), JSON.stringify(envelope(clock, "orders", "c", { after: { id: offset, status: "paid" } })), coord)!, now);
  }
  const r = await apply(batch);
  expect(r).toMatchObject({ applied: 2, skipped: 0, deadLetters: 1 });
  expect((await sql`SELECT id FROM fact_orders ORDER BY id`).map((x) => Number(x.id))).toEqual([0, 2]);
  expect(Number((await sql`SELECT position FROM cdc_sink.dead_letters`)[0]!.position)).toBe(1);
  expect(Number((await sql`SELECT position FROM cdc_sink.checkpoints WHERE part = 'orders/1'`)[0]!.position)).toBe(3);
  await sql.end();
});

test("a row the database rejects is a dead letter whose error names the column; a constraint's names the constraint", async () => {
  const { sql, cfg } = await setup();
  await sql`ALTER TABLE fact_orders ADD CONSTRAINT known_currency CHECK (currency <> 'XXX')`;
  await sql`ALTER TABLE fact_orders ADD COLUMN channel varchar(8)`;
  const orders = (await loadTargets(sql, cfg.mappings)).find((t) => t.table.name === "fact_orders")!;
  const apply = createApplier({ sql, stateSchema: "cdc_sink", log: silentLogger });
  const clock = newClock();
  const batch = new ChangeBatch({ maxEvents: 100, maxBytes: 1 << 20, maxLatencyMs: 50 });
  const now = Date.now();
  for (let offset = 0; offset < 5; offset++) {
    const coord: Coord = { stream: "kafka:g", part: "orders/2", position: BigInt(offset) };
    batch.advance(coord, BigInt(offset + 1), 100, now);
    const c = decodeDebezium(orders, keyOf(offset), JSON.stringify(envelope(clock, "orders", "c", { after: { id: offset, status: "paid", total_amount: 1, currency: "EUR", channel: "web", updated_at: "2026-11-30T20:00:00.123456Z" } })), coord)!;
    // values as a decoder that let them through would hand them on: too large for numeric(12,2), and a currency the table refuses
    if (offset === 1) c.vals![c.cols!.indexOf("total_amount")] = "12345678901234.5";
    if (offset === 2) {
      c.vals![c.cols!.indexOf("currency")] = "XXX";
      // longer than varchar(8) only by trailing spaces, which PostgreSQL cuts: not the column to name
      c.vals![c.cols!.indexOf("channel")] = "mobile      ";
      // every column of this row is probed: a timestamp JavaScript's Date cannot read must not break that
      expect(c.cols).toContain("updated_at");
      c.vals![c.cols!.indexOf("updated_at")] = "infinity";
    }
    // varchar(8) counts characters: 8 outside the BMP fit (16 UTF-16 units), 9 do not
    if (offset === 3) {
      c.vals![c.cols!.indexOf("currency")] = "XXX";
      c.vals![c.cols!.indexOf("channel")] = `${"😀".repeat(8)}  `;
    }
    if (offset === 4) c.vals![c.cols!.indexOf("channel")] = "😀".repeat(9);
    batch.add(c, now);
  }
  const r = await apply(batch);
  expect(r).toMatchObject({ applied: 1, deadLetters: 4 });
  const dead = await sql`SELECT position::int AS p, error_code, error FROM cdc_sink.dead_letters ORDER BY position`;
  expect(dead.map((d) => [d.p, d.error_code])).toEqual([
    [1, "22003"],
    [2, "23514"],
    [3, "23514"],
    [4, "22001"],
  ]);
  expect(dead[0]!.error).toStartWith("column total_amount: ");
  for (const d of [dead[1]!, dead[2]!]) {
    expect(d.error).not.toStartWith("column ");
    expect(d.error).toContain("known_currency");
  }
  expect(dead[3]!.error).toStartWith("column channel: ");
  await sql.end();
});

test("hostile column names are identifiers, never SQL (a table name must be a plain lower-case one): changes to them apply, nothing else is touched", async () => {
  const pg = await sharedCluster();
  const url = await pg.createDatabase("hostile_idents");
  const sql = await analyticsDb(url);
  const table = "hostile_t";
  expect(() => config(`[kafka]\nbootstrap_servers = "b:9"\ngroup_id = "g"\n[postgres]\nurl = "${url}"\n[[mappings]]\ntopic = "t"\ntable = 'x"; DROP TABLE fact_orders; --'\n`)).toThrow(/mappings\[0\]\.table/);
  const cols = { key: `id" OR 1=1 --`, quote: `it's`, semi: `a;b`, dollar: `$1`, unicode: `ключ 🗝` };
  const q = (n: string) => `"${n.replaceAll('"', '""')}"`;
  await sql.unsafe(`CREATE TABLE ${q(table)} (${q(cols.key)} bigint PRIMARY KEY, ${q(cols.quote)} text, ${q(cols.semi)} numeric(6,2), ${q(cols.dollar)} text, ${q(cols.unicode)} text,
    _cdc_commit_lsn numeric(20,0), _cdc_lsn numeric(20,0), _cdc_synced_at timestamptz)`);
  const cfg = config(`[kafka]\nbootstrap_servers = "127.0.0.1:9"\ngroup_id = "g"\n[postgres]\nurl = "${url}"\n[[mappings]]\ntopic = "t"\ntable = ${JSON.stringify(table)}\n`);
  await ensureStateTables(sql, cfg.postgres.state_schema);
  const [target] = await loadTargets(sql, cfg.mappings);
  const apply = createApplier({ sql, stateSchema: "cdc_sink", log: silentLogger });
  const clock = newClock();
  const batch = new ChangeBatch({ maxEvents: 100, maxBytes: 1 << 20, maxLatencyMs: 50 });
  const now = Date.now();
  const rows = [
    { [cols.key]: 1, [cols.quote]: "'); DELETE FROM fact_orders; --", [cols.semi]: 1.5, [cols.dollar]: "$2", [cols.unicode]: "ok" },
    { [cols.key]: 2, [cols.quote]: null, [cols.semi]: -0.25, [cols.dollar]: "\\x00", [cols.unicode]: "🗝" },
  ];
  for (const [i, after] of rows.entries()) {
    const coord: Coord = { stream: "kafka:g", part: "t/0", position: BigInt(i) };
    batch.advance(coord, BigInt(i + 1), 100, now);
    batch.add(decodeDebezium(target!, JSON.stringify({ [cols.key]: i + 1 }), JSON.stringify(envelope(clock, table, "c", { after })), coord)!, now);
  }
  expect(await apply(batch)).toMatchObject({ applied: 2, deadLetters: 0 });
  const second = new ChangeBatch({ maxEvents: 100, maxBytes: 1 << 20, maxLatencyMs: 50 });
  const del: Coord = { stream: "kafka:g", part: "t/0", position: 2n };
  second.advance(del, 3n, 100, now);
  second.add(decodeDebezium(target!, JSON.stringify({ [cols.key]: 2 }), JSON.stringify(envelope(clock, table, "d", { before: rows[1]!, after: null })), del)!, now);
  expect(await apply(second)).toMatchObject({ applied: 1, deadLetters: 0 });
  const stored = await sql.unsafe(`SELECT ${q(cols.key)}::int AS k, ${q(cols.quote)} AS a, ${q(cols.semi)}::text AS b, ${q(cols.dollar)} AS c, ${q(cols.unicode)} AS d FROM ${q(table)}`);
  expect(stored.map((r) => [r.k, r.a, r.b, r.c, r.d])).toEqual([[1, "'); DELETE FROM fact_orders; --", "1.50", "$2", "ok"]]);
  expect((await sql`SELECT to_regclass('fact_orders') IS NOT NULL AS present`)[0]!.present).toBe(true);
  await sql.end();
});

test("a zombie is fenced: after another instance claimed its partition, its batch commits nothing", async () => {
  const { sql, orders } = await setup();
  const store = createCheckpointStore(sql, "cdc_sink");
  const part = "orders/3";
  const zombieFences = new Fences();
  const ownerFences = new Fences();
  const claim = async (fences: Fences) => {
    const c = await store.claim("kafka:g", [part]);
    fences.set(`kafka:g\u0000${part}`, c.get(part)!.generation);
  };
  await claim(zombieFences);
  const clock = newClock();
  const batchAt = (offset: number, id: number) => {
    const batch = new ChangeBatch({ maxEvents: 100, maxBytes: 1 << 20, maxLatencyMs: 50 });
    const coord: Coord = { stream: "kafka:g", part, position: BigInt(offset) };
    batch.advance(coord, BigInt(offset + 1), 100, Date.now());
    batch.add(decodeDebezium(orders, keyOf(id), JSON.stringify(envelope(clock, "orders", "c", { after: { id, status: "paid" } })), coord)!, Date.now());
    return batch;
  };
  const zombie = createApplier({ sql, stateSchema: "cdc_sink", log: silentLogger, fences: zombieFences });
  await zombie(batchAt(0, 1));
  // the zombie stops; another instance takes the partition over and commits
  await claim(ownerFences);
  const owner = createApplier({ sql, stateSchema: "cdc_sink", log: silentLogger, fences: ownerFences });
  await owner(batchAt(1, 2));
  // the zombie wakes with a batch the owner has not reached yet: it must not commit it
  await expect(zombie(batchAt(5, 6))).rejects.toBeInstanceOf(Fenced);
  expect((await sql`SELECT id::int FROM fact_orders ORDER BY id`).map((r) => r.id)).toEqual([1, 2]);
  expect(Number((await sql`SELECT position FROM cdc_sink.checkpoints WHERE part = ${part}`)[0]!.position)).toBe(2);
  await sql.end();
});
