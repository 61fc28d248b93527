import { expect, test } from "bun:test";
import type { Mapping } from "../config.ts";
import type { Column } from "../model.ts";
import { typmodParts } from "../sink/schema.ts";
import { resolveTarget } from "../sink/targets.ts";
import { decodingContract } from "./contract.ts";

const column = (name: string, type: string, sqlType: string, typmod = -1, isArray = false): Column => ({ name, type, isArray, ...typmodParts(type, typmod), sqlType, castType: sqlType.replace(/\(.*\)/, ""), notNull: false, hasDefault: false });
function contract(debezium: Mapping["debezium"]) {
  const cols = [
    column("id", "int8", "bigint"),
    column("amount", "numeric", "numeric(12,2)", (12 << 16) + 2 + 4),
    column("ratio", "numeric", "numeric"),
    column("at", "timestamp", "timestamp(3) without time zone", 3),
    column("at6", "timestamp", "timestamp(6) without time zone", 6),
    column("span", "interval", "interval"),
    column("blob", "bytea", "bytea"),
    column("code", "varchar", "character varying(5)", 9),
  ];
  const mapping = { topic: "t", table: "t", rename: {}, delete_mode: "hard", soft_delete_column: "_cdc_deleted_at", truncate: "ignore", debezium } as Mapping;
  const t = resolveTarget(mapping, { name: "t", ident: '"t"', columns: new Map(cols.map((c) => [c.name, c])), primaryKey: ["id"], uniqueKeys: [["id"]] });
  return Object.fromEntries(decodingContract(t).map((c) => [c.column, c]));
}

test("the decoding contract names what each column expects under the modes, and warns where values can lose meaning", () => {
  const defaults = contract({});
  expect(defaults.amount).toEqual({ column: "amount", sqlType: "numeric(12,2)", expects: "a base64 unscaled integer, scale 2", warning: undefined });
  expect(defaults.at!.expects).toStartWith("milliseconds since 1970-01-01");
  expect(defaults.at!.warning).toContain("a timestamp(4..6) source sends microseconds");
  expect(defaults.at6!.warning).toBeUndefined();
  expect(defaults.span!.warning).toContain("30.4375 days");
  expect(defaults.blob!.warning).toBeUndefined();
  expect(defaults.code!.warning).toBe("values longer than 5 characters are dead-lettered");

  const lossy = contract({ "decimal.handling.mode": "double", "binary.handling.mode": "base64", "time.precision.mode": "connect", "interval.handling.mode": "string" });
  expect(lossy.amount!.warning).toBeUndefined();
  expect(lossy.ratio!.warning).toContain("a double holds 15 significant digits");
  expect(lossy.at6!.warning).toContain("gets no microseconds");
  expect(lossy.blob!.warning).toContain("sends an unchanged TOASTed value as null");
  expect(lossy.span!.warning).toBeUndefined();
});
