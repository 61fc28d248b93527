import { expect, test } from "bun:test";
import { formatSqlType, holds, judge, parseSqlType } from "./types.ts";

test("format_type spellings and short forms parse to one canonical type", () => {
  expect(parseSqlType("character varying(20)")).toEqual({ base: "varchar", mods: [20], array: false });
  expect(parseSqlType("varchar(20)")).toEqual(parseSqlType("character varying(20)"));
  expect(parseSqlType("timestamp(3) without time zone")).toEqual({ base: "timestamp", mods: [3], array: false });
  expect(parseSqlType("numeric(12,2)[]")).toEqual({ base: "numeric", mods: [12, 2], array: true });
  expect(parseSqlType("integer")).toEqual(parseSqlType("int4"));
  expect(parseSqlType("public.mood")).toEqual({ base: "public.mood", mods: [], array: false });
  expect(formatSqlType(parseSqlType("varchar(50)[]"))).toBe("character varying(50)[]");
});

test("a column holds a source type when every value keeps its text", () => {
  const h = (col: string, src: string) => holds(parseSqlType(col), parseSqlType(src));
  expect(h("bigint", "integer")).toBe(true);
  expect(h("integer", "bigint")).toBe(false);
  expect(h("text", "character varying(20)")).toBe(true);
  expect(h("character varying(20)", "character varying(10)")).toBe(true);
  expect(h("character varying(10)", "text")).toBe(false);
  expect(h("numeric(14,4)", "numeric(12,2)")).toBe(true);
  expect(h("numeric(12,4)", "numeric(12,2)")).toBe(false);
  expect(h("numeric", "numeric(12,2)")).toBe(true);
  expect(h("numeric(20,0)", "bigint")).toBe(true);
  expect(h("integer[]", "integer")).toBe(false);
  expect(h("text", "integer")).toBe(false);
});

test("judge: fits, a safe widening, or incompatible; loose source types fit a column of their family", () => {
  expect(judge("character varying(20)", "character varying(50)")).toEqual({ verdict: "widen", to: "character varying(50)" });
  expect(judge("character varying(20)", "text")).toEqual({ verdict: "widen", to: "text" });
  expect(judge("integer", "bigint")).toEqual({ verdict: "widen", to: "bigint" });
  expect(judge("smallint[]", "integer[]")).toEqual({ verdict: "widen", to: "integer[]" });
  expect(judge("numeric(12,2)", "numeric(14,2)")).toEqual({ verdict: "widen", to: "numeric(14,2)" });
  // more digits on both sides of the point than either has
  expect(judge("numeric(12,4)", "numeric(14,2)")).toEqual({ verdict: "widen", to: "numeric(16,4)" });
  expect(judge("numeric(12,2)", "numeric")).toEqual({ verdict: "widen", to: "numeric" });
  expect(judge("bigint", "integer")).toEqual({ verdict: "fits" });
  expect(judge("character varying(50)", "character varying(20)")).toEqual({ verdict: "fits" });
  expect(judge("integer", "text")).toEqual({ verdict: "incompatible" });
  expect(judge("text", "integer")).toEqual({ verdict: "incompatible" });
  expect(judge("text", "text[]")).toEqual({ verdict: "incompatible" });
  expect(judge("double precision", "numeric(12,2)")).toEqual({ verdict: "incompatible" });
  // a Kafka Connect `string` does not say varchar(20): a textual column of any length fits
  expect(judge("character varying(20)", "text", true)).toEqual({ verdict: "fits" });
  expect(judge("json", "jsonb", true)).toEqual({ verdict: "fits" });
  expect(judge("integer", "text", true)).toEqual({ verdict: "incompatible" });
});
