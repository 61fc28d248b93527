import { expect, test } from "bun:test";
import { parseConfig } from "../config.ts";
import { defaultVerifyTable, subjects } from "./plan.ts";

const cfg = (text: string) => {
  const r = parseConfig(text);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.config;
};

test("Kafka mappings read verify_table, by default the topic's last two parts; without verify_source they are skipped", () => {
  expect(defaultVerifyTable("ecom-connector.public.orders")).toBe("public.orders");
  const c = cfg(`
[kafka]
bootstrap_servers = "b:9092"
[postgres]
url = "postgres://a/b"
[[postgres_sources]]
name = "ecom"
url = "postgres://e/ecom"
[[mappings]]
topic = "ecom-connector.public.orders"
table = "fact_orders"
verify_source = "ecom"
[[mappings]]
topic = "x.public.books"
table = "dim_books"
verify_source = "ecom"
verify_table = "catalog.books"
[[mappings]]
topic = "inventory-connector.public.inventory"
table = "fact_inventory"
`);
  const s = subjects(c);
  expect(s.map((x) => [x.table, x.mode, x.source?.name, x.sourceTable, x.skip])).toEqual([
    ["fact_orders", "kafka", "ecom", "public.orders", undefined],
    ["dim_books", "kafka", "ecom", "catalog.books", undefined],
    ["fact_inventory", "kafka", undefined, "public.inventory", "no verify_source: the source table cannot be read"],
  ]);
  expect(subjects(c, "catalog.books").map((x) => x.table)).toEqual(["dim_books"]);
  expect(subjects(c, "ecom-connector.public.orders").map((x) => x.table)).toEqual(["fact_orders"]);
  expect(subjects(c, "nope")).toEqual([]);
});

test("PostgreSQL mappings read their source_table; the sink's progress is the checkpoint pg:<slot>/<source> and the slot", () => {
  const c = cfg(`
[source]
kind = "postgres"
[postgres]
url = "postgres://a/b"
[[postgres_sources]]
name = "ecom"
url = "postgres://e/ecom"
slot = "my_slot"
[[mappings]]
source = "ecom"
source_table = "public.orders"
table = "fact_orders"
`);
  const [s] = subjects(c);
  expect(s).toMatchObject({ table: "fact_orders", mode: "postgres", sourceTable: "public.orders", progress: { stream: "pg:my_slot", part: "ecom", slot: "my_slot" } });
  expect(s!.skip).toBeUndefined();
});
