// The DDL files apply twice without error; the views return figures computed by hand.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import postgres from "postgres";
import { ROOT } from "./support/harness.ts";
import { sharedCluster } from "./support/pg.ts";

test("every DDL file applies twice", async () => {
  const pg = await sharedCluster();
  for (const f of ["analytics-ddl.sql", "ecom-ddl.sql", "inventory-ddl.sql"]) {
    const sql = postgres(await pg.createDatabase("ddl"), { max: 1, onnotice: () => {} });
    const text = readFileSync(`${ROOT}sql/${f}`, "utf8");
    await sql.unsafe(text);
    await sql.unsafe(text);
    if (f === "ecom-ddl.sql") {
      const sample = readFileSync(`${ROOT}sql/sample-data.sql`, "utf8");
      await sql.unsafe(sample);
      await sql.unsafe(sample);
      expect((await sql`SELECT count(*)::int AS n FROM books`)[0]!.n).toBe(4);
      const ident = await sql`SELECT relname, relreplident FROM pg_class WHERE relname IN ('orders', 'order_items', 'books') ORDER BY 1`;
      expect(ident.map((r) => r.relreplident)).toEqual(["d", "d", "d"]);
    }
    await sql.end();
  }
});

test("sales views count paid, shipped and delivered orders only, per book and per UTC day", async () => {
  const pg = await sharedCluster();
  const sql = postgres(await pg.createDatabase("views"), { max: 1, onnotice: () => {} });
  await sql.unsafe(readFileSync(`${ROOT}sql/analytics-ddl.sql`, "utf8"));
  await sql`INSERT INTO dim_books (id, title, price, _cdc_deleted_at) VALUES (1, 'Dune', 10, NULL), (2, 'Emma', 10, NULL), (3, 'Hobbit', 10, now())`;
  await sql`INSERT INTO fact_orders (id, status, total_amount, created_at, _cdc_deleted_at) VALUES
    (10, 'paid', 30.00, '2024-03-01 10:00Z', NULL),
    (11, 'shipped', 20.00, '2024-03-01 23:30Z', NULL),
    (12, 'pending', 99.00, '2024-03-02 09:00Z', NULL),
    (13, 'cancelled', 50.00, '2024-03-02 10:00Z', NULL),
    (14, 'delivered', 5.00, '2024-03-02 01:00+02', NULL),
    (15, 'paid', 7.00, '2024-03-03 10:00Z', now())`;
  await sql`INSERT INTO fact_order_items (id, order_id, book_id, quantity, unit_price) VALUES
    (1, 10, 1, 2, 10.00), (2, 10, 2, 1, 10.00), (3, 11, 1, 1, 20.00), (4, 12, 2, 5, 19.80),
    (5, 13, 1, 3, 16.67), (6, 14, 2, 1, 5.00), (7, 15, 1, 1, 7.00), (8, 16, 1, 9, 1.00)`;
  expect((await sql`SELECT book_id::int, title, units_sold::int, revenue::text FROM vw_product_sales_volume ORDER BY book_id`).map((r) => ({ ...r }))).toEqual([
    { book_id: 1, title: "Dune", units_sold: 3, revenue: "40.00" },
    { book_id: 2, title: "Emma", units_sold: 2, revenue: "15.00" },
  ]);
  expect((await sql`SELECT day::text, orders::int, revenue::text FROM vw_sales_over_time ORDER BY day`).map((r) => ({ ...r }))).toEqual([{ day: "2024-03-01", orders: 3, revenue: "55.00" }]);
  await sql.end();
});
