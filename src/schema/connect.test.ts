import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { type ConnectField, connectSqlType } from "./connect.ts";
import { judge } from "./types.ts";

const fixtures = new URL("../../test/fixtures/debezium/", import.meta.url);
const source = JSON.parse(readFileSync(new URL("source.json", fixtures), "utf8")) as { columns: Array<{ name: string; type: string }> };

/** The row image's field schemas of the first record of a recorded topic. */
function afterFields(file: string): ConnectField[] {
  const first = JSON.parse(readFileSync(new URL(file, fixtures), "utf8").split("\n")[0]!) as { value: string };
  const schema = JSON.parse(first.value).schema as { fields: ConnectField[] };
  return schema.fields.find((f) => f.field === "after")!.fields!;
}

test("Debezium 3.6.1's field schemas derive types that fit the source's own columns (precise decimals, adaptive times)", () => {
  const fields = afterFields("adaptive-precise-bytes-numeric-schema.jsonl");
  const derived = Object.fromEntries(fields.map((f) => [f.field!, connectSqlType(f)]));
  expect(derived.c_numeric_12_2).toEqual({ sqlType: "numeric(12,2)", loose: false });
  expect(derived.c_numeric).toEqual({ sqlType: "numeric", loose: false });
  expect(derived.c_numeric_arr).toEqual({ sqlType: "numeric[]", loose: false });
  expect(derived.c_ts6).toEqual({ sqlType: "timestamp without time zone", loose: true });
  expect(derived.c_tstz3).toEqual({ sqlType: "timestamp with time zone", loose: true });
  expect(derived.c_date).toEqual({ sqlType: "date", loose: false });
  expect(derived.c_interval).toEqual({ sqlType: "interval", loose: false });
  expect(derived.c_bytea).toEqual({ sqlType: "bytea", loose: false });
  expect(derived.c_int_arr).toEqual({ sqlType: "integer[]", loose: false });
  const misfits = source.columns.filter((c) => {
    const d = derived[c.name];
    return !d || judge(c.type, d.sqlType, d.loose).verdict !== "fits";
  });
  // money arrives as a decimal of scale 2, an enum as its label: both are taken as chosen, not changed
  expect(misfits.map((c) => c.name)).toEqual(["c_money", "c_mood"]);
});

test("the source's own type, length and scale win when Debezium propagates them; unnamed structs have no type", () => {
  expect(connectSqlType({ type: "string", parameters: { "__debezium.source.column.type": "VARCHAR", "__debezium.source.column.length": "20" } })).toEqual({ sqlType: "character varying(20)", loose: false });
  expect(connectSqlType({ type: "double", parameters: { "__debezium.source.column.type": "NUMERIC", "__debezium.source.column.length": "14", "__debezium.source.column.scale": "3" } })).toEqual({ sqlType: "numeric(14,3)", loose: false });
  expect(connectSqlType({ type: "bytes", name: "org.apache.kafka.connect.data.Decimal", parameters: { scale: "2" } })).toEqual({ sqlType: "numeric", loose: true });
  expect(connectSqlType({ type: "struct", fields: [] })).toBeUndefined();
  expect(connectSqlType({ type: "map" })).toBeUndefined();
});
