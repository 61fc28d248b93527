import { expect, test } from "bun:test";
import type { Mapping } from "../config.ts";
import { mappingOf } from "./retry.ts";

const mappings = [
  { source: "ecom", source_table: "public.books", table: "dim_books" },
  { source: "legacy", source_table: "public.books", table: "dim_books" },
  { topic: "ecom-connector.public.orders", table: "fact_orders" },
] as unknown as Mapping[];

test("a PostgreSQL-source dead letter goes back to its own source's mapping, a snapshot row's too; none when no mapping reads that source", () => {
  expect(mappingOf({ mappings }, { stream: "pg:cdc_sink_legacy", part: "legacy", target_table: "dim_books" })?.source).toBe("legacy");
  expect(mappingOf({ mappings }, { stream: "pg:cdc_sink_legacy", part: "legacy#snapshot", target_table: "dim_books" })?.source).toBe("legacy");
  expect(mappingOf({ mappings }, { stream: "pg:cdc_sink_ecom", part: "ecom#snapshot", target_table: "dim_books" })?.source).toBe("ecom");
  expect(mappingOf({ mappings }, { stream: "pg:cdc_sink_gone", part: "gone", target_table: "dim_books" })).toBeUndefined();
});

test("a Kafka dead letter goes back to its topic's mapping", () => {
  expect(mappingOf({ mappings }, { stream: "kafka:cdc-sink", part: "ecom-connector.public.orders/3", target_table: "fact_orders" })?.topic).toBe("ecom-connector.public.orders");
});
