// Truncate, and delete + tombstone, exactly as Debezium 3.6.1 sends them: a variant of the shipped
// ecom connector on a database of its own, with `skipped.operations=none` (Debezium skips truncates
// by default), read by two cdc-sink instances whose orders mapping says truncate = "ignore" and
// truncate = "truncate". Then the ignore side's whole topic is replayed over its analytics state.
import { expect } from "bun:test";
import { waitFor } from "../support/harness.ts";
import {
  connect,
  createDatabase,
  dropDatabase,
  readTopics,
  registerVariant,
  type Sink,
  sinkConfig,
  stackEnv,
  stackTest,
  startSink,
  uniqueName,
  type Variant,
} from "./support.ts";

stackTest("truncate and delete + tombstone as Debezium sends them, under truncate = \"ignore\" and \"truncate\"", async () => {
  const env = stackEnv();
  const name = uniqueName("tt");
  const srcUrl = await createDatabase(env.ECOM_DB_URL, name, ["sql/ecom-ddl.sql"]);
  const src = connect(srcUrl);
  const dbs: Record<string, string> = {};
  const an: Record<string, ReturnType<typeof connect>> = {};
  const sinks: Sink[] = [];
  let variant: Variant | undefined;
  try {
    await src`INSERT INTO orders (customer_id, status, total_amount) VALUES (1, 'paid', 10.50), (2, 'pending', 20.00), (3, 'shipped', 30.25)`;
    variant = await registerVariant(env, "ecom", name, name, { "table.include.list": "public.orders", "skipped.operations": "none" });
    const topic = `${variant.prefix}.public.orders`;
    for (const mode of ["ignore", "truncate"] as const) {
      dbs[mode] = await createDatabase(env.ANALYTICS_DB_URL, `${name}_${mode}`, ["sql/analytics-ddl.sql"]);
      an[mode] = connect(dbs[mode]!);
      const s = await startSink(sinkConfig({ bootstrap: env.BOOTSTRAP_SERVERS, db: dbs[mode]!, group: `${name}_${mode}`, mappings: [{ topic, table: "fact_orders", extra: `truncate = "${mode}"` }] }), mode);
      sinks.push(s);
    }
    await Promise.all(sinks.map((s) => s.ready()));
    const ids = async (mode: string) => (await an[mode]!`SELECT id::int FROM fact_orders ORDER BY id`).map((r) => r.id as number);
    const both = (what: string, want: number[]) =>
      Promise.all(["ignore", "truncate"].map((m) => waitFor(`${what} (${m})`, async () => JSON.stringify(await ids(m)) === JSON.stringify(want), 20_000)));
    await both("the snapshot", [1, 2, 3]);

    // delete: Debezium sends the d event, then a tombstone (same key, null value)
    await src`INSERT INTO orders (customer_id, status, total_amount) VALUES (4, 'paid', 40.00)`;
    await src`DELETE FROM orders WHERE id = 1`;
    await both("the insert and the delete", [2, 3, 4]);
    for (const m of ["ignore", "truncate"]) {
      expect((await an[m]!`SELECT count(*)::int AS n FROM cdc_sink.tombstones WHERE tbl = 'fact_orders'`)[0]!.n).toBe(1);
    }

    // truncate: one event with a null key (op t); "ignore" keeps every row, "truncate" empties the table
    await src`TRUNCATE orders CASCADE`;
    await src`INSERT INTO orders (customer_id, status, total_amount) VALUES (5, 'delivered', 50.00)`;
    const rows = (m: string) => an[m]!`SELECT id::int, status, total_amount::text FROM fact_orders ORDER BY id`;
    await waitFor("order 5 after the truncate (truncate)", async () => JSON.stringify(await ids("truncate")) === "[5]", 20_000);
    await waitFor("order 5 after the truncate (ignore)", async () => (await ids("ignore")).includes(5), 20_000);
    // the truncate came before order 5 in the same partition, so it has been handled by now
    expect([...(await rows("ignore"))]).toEqual([
      { id: 2, status: "pending", total_amount: "20.00" },
      { id: 3, status: "shipped", total_amount: "30.25" },
      { id: 4, status: "paid", total_amount: "40.00" },
      { id: 5, status: "delivered", total_amount: "50.00" },
    ]);
    expect([...(await rows("truncate"))]).toEqual([{ id: 5, status: "delivered", total_amount: "50.00" }]);
    expect(await sinks[0]!.metric('cdc_sink_truncates_ignored_total{table="fact_orders"}')).toBe(1);
    expect(await sinks[1]!.metric('cdc_sink_truncates_ignored_total{table="fact_orders"}')).toBe(0);
    for (const m of ["ignore", "truncate"]) expect((await an[m]!`SELECT count(*)::int AS n FROM cdc_sink.dead_letters`)[0]!.n).toBe(0);

    // what Debezium sent: r r r, c, d + tombstone for id 1, t with a null key, c
    const recs = (await readTopics(env.BOOTSTRAP_SERVERS, [topic])).get(topic)!;
    const ops = recs.map((r) => (r.value === null ? `tombstone:${JSON.parse(r.key!).id}` : `${JSON.parse(r.value).op}:${r.key === null ? "null" : JSON.parse(r.key).id}`));
    expect(ops).toEqual(["r:1", "r:2", "r:3", "c:4", "d:1", "tombstone:1", "t:null", "c:5"]);
    const del = JSON.parse(recs[4]!.value!);
    expect(del.after).toBeNull();
    expect(del.before.id).toBe(1); // REPLICA IDENTITY DEFAULT: the key, filler for the rest

    // the whole topic again over the ignore side's state (a new consumer group): nothing changes
    const before = [...(await an.ignore!`SELECT id, status, total_amount::text, _cdc_commit_lsn::text, _cdc_lsn::text FROM fact_orders ORDER BY id`)];
    const group = `${name}_replay`;
    const replay = await startSink(sinkConfig({ bootstrap: env.BOOTSTRAP_SERVERS, db: dbs.ignore!, group, mappings: [{ topic, table: "fact_orders", extra: `truncate = "ignore"` }] }), "replay");
    sinks.push(replay);
    await replay.ready();
    await waitFor(
      "the replay to reach the end of the topic",
      async () => (await an.ignore!`SELECT position::int AS p FROM cdc_sink.checkpoints WHERE stream = ${`kafka:${group}`}`)[0]?.p === recs.length,
      20_000,
    );
    expect([...(await an.ignore!`SELECT id, status, total_amount::text, _cdc_commit_lsn::text, _cdc_lsn::text FROM fact_orders ORDER BY id`)]).toEqual(before);
    expect(await replay.metric('cdc_sink_rows_skipped_total{table="fact_orders"}')).toBeGreaterThan(0);
  } finally {
    const codes = await Promise.all(sinks.map((s) => s.term()));
    await variant?.delete();
    await Promise.all([src.end(), ...Object.values(an).map((s) => s.end())]);
    await Promise.all([dropDatabase(srcUrl), ...Object.values(dbs).map(dropDatabase)]);
    expect(codes).toEqual(sinks.map(() => 0));
  }
}, 120_000);
