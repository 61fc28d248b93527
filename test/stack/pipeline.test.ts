// The seed's pipeline on the real stack: the connector JSONs exactly as shipped (only where the
// databases and secrets are is given at registration) on Kafka Connect with Debezium 3.6.1, their
// topics on the KRaft broker, and cdc-sink running sink.toml as shipped (pointed at the stack):
// the initial snapshot and the stream land in analytics and the views answer.
import { afterAll, expect } from "bun:test";
import { connect, connectorStates, difference, readTopics, registerConnectors, shippedSinkConfig, stackEnv, stackTest, startSink, uniqueName } from "./support.ts";
import { waitFor } from "../support/harness.ts";

const shipped = ["ecom-connector", "inventory-connector"];
afterAll(async () => {
  if (!process.env.STACK_DIR) return;
  const env = stackEnv();
  for (const n of shipped) await fetch(`${env.CONNECT_URL}/connectors/${n}`, { method: "DELETE" }).catch(() => undefined);
});

stackTest("the shipped connectors register on the real Kafka Connect, run, and publish the snapshot and the stream", async () => {
  const env = stackEnv();
  const r = await registerConnectors(env);
  expect(r.out).toContain("ecom-connector RUNNING (1 task(s))");
  expect(r.out).toContain("inventory-connector RUNNING (1 task(s))");
  console.log(`connectors RUNNING ${(r.ms / 1000).toFixed(1)} s after registration`);
  for (const n of shipped) expect(await connectorStates(env, n)).toEqual(["RUNNING", "RUNNING"]);

  const ecom = connect(env.ECOM_DB_URL);
  try {
    const ids = (await ecom`SELECT id FROM orders ORDER BY id`).map((r) => Number(r.id));
    const tag = 900_000_000 + Math.floor(Math.random() * 1_000_000);
    const id = (await ecom`INSERT INTO orders (customer_id, status, total_amount) VALUES (${tag}, 'pending', 12.34) RETURNING id`)[0]!.id as string;
    await ecom`UPDATE orders SET status = 'paid' WHERE id = ${id}`;
    await ecom`DELETE FROM orders WHERE id = ${id}`;
    const key = JSON.stringify({ id: Number(id) });
    const topic = "ecom-connector.public.orders";
    const recs = await waitFor("the tombstone of the new order on the topic", async () => {
      const all = (await readTopics(env.BOOTSTRAP_SERVERS, [topic])).get(topic)!;
      return all.some((r) => r.key === key && r.value === null) && all;
    });
    // the snapshot (or an earlier stream) holds every row that existed
    const seen = new Set(recs.filter((r) => r.value !== null).map((r) => JSON.parse(r.key!).id as number));
    for (const i of ids) expect(seen.has(i)).toBe(true);
    expect(recs.some((r) => r.value !== null && JSON.parse(r.value).op === "r")).toBe(true);
    // the stream: c, u, d and a tombstone for the new row, in that order, schemaless JSON
    const mine = recs.filter((r) => r.key === key).map((r) => (r.value === null ? "tombstone" : (JSON.parse(r.value) as { op: string }).op));
    // (Connect delivers at least once: a task restarted by a rebalance re-sends from its last
    // flushed offset, so the same events may follow again)
    expect([...new Set(mine)]).toEqual(["c", "u", "d", "tombstone"]);
    expect(mine.at(-1)).toBe("tombstone");
    const created = JSON.parse(recs.find((r) => r.key === key && r.value !== null)!.value!);
    expect(created.after.customer_id).toBe(tag);
    expect(created.after.total_amount).toBe(12.34); // decimal.handling.mode=double
    expect(created.source.name).toBe("ecom-connector");
    expect(created.schema).toBeUndefined(); // schemas.enable=false
  } finally {
    await ecom.end();
  }
  const inv = (await readTopics(env.BOOTSTRAP_SERVERS, ["inventory-connector.public.inventory"])).get("inventory-connector.public.inventory")!;
  expect(inv.length).toBeGreaterThan(0);
}, 120_000);

const SALE = `('paid', 'shipped', 'delivered')`;
/** the views' numbers computed independently, from the source database */
const expectedSales = (ecom: ReturnType<typeof connect>) =>
  ecom.unsafe(`SELECT b.id::text AS book_id, b.title, coalesce(sum(i.quantity), 0)::text AS units_sold, coalesce(sum(i.quantity * i.unit_price), 0)::numeric(14,2)::text AS revenue
    FROM books b LEFT JOIN (order_items i JOIN orders o ON o.id = i.order_id AND o.status IN ${SALE}) ON i.book_id = b.id
    GROUP BY b.id, b.title ORDER BY b.id`);
const expectedDays = (ecom: ReturnType<typeof connect>) =>
  ecom.unsafe(`SELECT (created_at AT TIME ZONE 'UTC')::date::text AS day, count(*)::text AS orders, sum(total_amount)::numeric(14,2)::text AS revenue
    FROM orders WHERE status IN ${SALE} GROUP BY 1 ORDER BY 1`);
const views = async (an: ReturnType<typeof connect>) => ({
  sales: [...(await an`SELECT book_id::text, title, units_sold::text, revenue::text FROM vw_product_sales_volume ORDER BY book_id`)],
  days: [...(await an`SELECT day::text, orders::text, revenue::text FROM vw_sales_over_time ORDER BY day`)],
});
const rowsOf = (rs: Iterable<Record<string, unknown>>) => [...rs].map((r) => ({ ...r }));

stackTest("the snapshot and the stream land in analytics through cdc-sink (sink.toml as shipped) and the views answer", async () => {
  const env = stackEnv();
  await registerConnectors(env); // (already registered by the test above: an update, or a create if it failed)
  const ecom = connect(env.ECOM_DB_URL);
  const inv = connect(env.INVENTORY_DB_URL);
  const an = connect(env.ANALYTICS_DB_URL);
  const sink = await startSink(shippedSinkConfig(env, uniqueName("pipeline")), "pipeline");
  try {
    const t0 = performance.now();
    await sink.ready();
    // the initial snapshot (op r) of all four tables
    await waitFor("the snapshot in analytics", async () => !(await difference(ecom, an, ["orders", "order_items", "books"])) && !(await difference(inv, an, ["inventory"])), 30_000);
    console.log(`snapshot in analytics ${((performance.now() - t0) / 1000).toFixed(1)} s after cdc-sink started`);
    const before = await views(an);
    expect(before.sales).toEqual(rowsOf(await expectedSales(ecom)));
    expect(before.days).toEqual(rowsOf(await expectedDays(ecom)));
    expect(before.sales.some((r) => Number(r.units_sold) > 0)).toBe(true);

    // the stream: a new paid order on a day of its own, a pending order paid, an item removed, stock changed
    const [b1, b2] = (await ecom`SELECT id FROM books ORDER BY id LIMIT 2`).map((r) => Number(r.id)) as [number, number];
    await ecom.begin(async (tx) => {
      const [o] = await tx`INSERT INTO orders (customer_id, status, total_amount, created_at) VALUES (777001, 'paid', 41.00, '2030-01-02 12:00+00') RETURNING id`;
      await tx`INSERT INTO order_items (order_id, book_id, quantity, unit_price) VALUES (${o!.id}, ${b1}, 3, 10.00), (${o!.id}, ${b2}, 1, 5.50), (${o!.id}, ${b2}, 1, 5.50)`;
    });
    await ecom`UPDATE orders SET status = 'paid', updated_at = now() WHERE status = 'pending' AND customer_id <> 777001`;
    await ecom.begin(async (tx) => {
      await tx`DELETE FROM order_items WHERE id = (SELECT max(i.id) FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.customer_id = 777001)`;
      await tx`UPDATE orders SET total_amount = 35.50 WHERE customer_id = 777001`;
    });
    await inv`UPDATE inventory SET quantity = quantity - 3, reserved = reserved + 1, updated_at = now() WHERE book_id = ${b1}`;
    const t1 = performance.now();
    await waitFor("the stream in analytics", async () => !(await difference(ecom, an, ["orders", "order_items", "books"])) && !(await difference(inv, an, ["inventory"])), 30_000);
    console.log(`stream in analytics ${((performance.now() - t1) / 1000).toFixed(1)} s after the last change`);
    const after = await views(an);
    expect(after.sales).toEqual(rowsOf(await expectedSales(ecom)));
    expect(after.days).toEqual(rowsOf(await expectedDays(ecom)));
    expect(after.days.find((d) => d.day === "2030-01-02")).toEqual({ day: "2030-01-02", orders: "1", revenue: "35.50" });
    const unitsOf = (v: typeof before, id: number) => Number(v.sales.find((r) => r.book_id === String(id))!.units_sold);
    expect(unitsOf(after, b1)).toBeGreaterThanOrEqual(unitsOf(before, b1) + 3);
    expect((await an`SELECT count(*)::int AS n FROM cdc_sink.dead_letters`)[0]!.n).toBe(0);
    expect(await sink.metric('cdc_sink_events_consumed_total{topic="ecom-connector.public.orders"}')).toBeGreaterThan(0);
  } finally {
    const code = await sink.term();
    await Promise.all([ecom.end(), inv.end(), an.end()]);
    expect(code).toBe(0);
  }
  expect(sink.log(5)).toContain('"msg":"stopped cleanly"');
}, 120_000);
