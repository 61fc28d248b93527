import { expect, test } from "bun:test";
import { boundaryQuery, chunkHashQuery, keyHashQuery, keyTextOf, rangeWhere, rowsQuery, rowText, SESSION_SETTINGS, type TablePlan, textExpr, valueExpr } from "./sql.ts";

const col = (name: string, sqlType: string, sourceType = sqlType, extra: Partial<TablePlan["columns"][number]> = {}) => ({
  source: name,
  target: name,
  sqlType,
  sourceType,
  money: sqlType === "money",
  viaText: false,
  ...extra,
});

const plan: TablePlan = {
  table: "fact_things",
  sourceIdent: `"public"."things"`,
  analyticsIdent: `"fact_things"`,
  key: [
    { ...col("a", "bigint", "integer"), collateC: false },
    { ...col("b", "text"), collateC: true },
  ],
  columns: [
    col("a", "bigint", "integer"),
    col("b", "text"),
    { ...col("qty", "numeric(12,2)", "numeric(12,3)"), source: "quantity" },
    col("price", "money"),
    col("mood", "mood", "text", { viaText: true }),
    col("at", "timestamp with time zone"),
  ],
  softDelete: `"_cdc_deleted_at"`,
  fastHash: true,
};

test("each source column is cast to the analytics type; money compares as numeric, unknown types as text", () => {
  const [a, , qty, price, mood, at] = plan.columns;
  expect(valueExpr(a!, "source")).toBe(`t."a"::bigint`);
  expect(valueExpr(a!, "analytics")).toBe(`t."a"`);
  expect(valueExpr(qty!, "source")).toBe(`t."quantity"::numeric(12,2)`);
  expect(valueExpr(qty!, "analytics")).toBe(`t."qty"`);
  expect(valueExpr(price!, "source")).toBe(`t."price"::numeric`);
  expect(valueExpr(price!, "analytics")).toBe(`t."price"::numeric`);
  expect(valueExpr(mood!, "source")).toBe(`t."mood"::text`);
  expect(valueExpr(mood!, "analytics")).toBe(`t."mood"::text`);
  // the same type on both sides: no cast
  expect(valueExpr(at!, "source")).toBe(`t."at"`);
  expect(textExpr(qty!, "source")).toBe(`(t."quantity"::numeric(12,2))::text`);
});

test("a row renders as one record literal (NULL and empty string stay distinct)", () => {
  expect(rowText(plan, "source")).toBe(`ROW(t."a"::bigint, t."b", t."quantity"::numeric(12,2), t."price"::numeric, t."mood"::text, t."at")::text`);
  expect(rowText(plan, "analytics")).toBe(`ROW(t."a", t."b", t."qty", t."price"::numeric, t."mood"::text, t."at")::text`);
});

test("the session settings that make both sides print alike", () => {
  expect(SESSION_SETTINGS).toEqual({ TimeZone: "UTC", DateStyle: "ISO, YMD", IntervalStyle: "postgres", extra_float_digits: "1", bytea_output: "hex" });
});

test("key ranges compare row-wise in each side's own key type, a text key of differing collations under C; soft deletes filtered on the analytics side only", () => {
  expect(rangeWhere(plan, "source", true, true)).toEqual({
    sql: `WHERE (t."a", t."b" COLLATE "C") > ($1::integer, $2::text COLLATE "C") AND (t."a", t."b" COLLATE "C") <= ($3::integer, $4::text COLLATE "C")`,
    next: 5,
  });
  expect(rangeWhere(plan, "analytics", false, true).sql).toBe(`WHERE t."_cdc_deleted_at" IS NULL AND (t."a", t."b" COLLATE "C") <= ($1::bigint, $2::text COLLATE "C")`);
  expect(rangeWhere(plan, "source", false, false)).toEqual({ sql: "", next: 1 });
  const single = { ...plan, key: [plan.key[0]!], softDelete: null };
  expect(rangeWhere(single, "analytics", true, false).sql).toBe(`WHERE t."a" > $1::bigint`);
});

test("chunk statements: boundary by offset in key order, hash sums, keys with their row's digest", () => {
  expect(boundaryQuery(plan, "source", true)).toBe(
    `SELECT (t."a"::bigint)::text AS k0, (t."b")::text AS k1 FROM "public"."things" t WHERE (t."a", t."b" COLLATE "C") > ($1::integer, $2::text COLLATE "C") ORDER BY t."a", t."b" COLLATE "C" OFFSET $3 LIMIT 1`,
  );
  expect(boundaryQuery(plan, "source", false)).toEndWith(`ORDER BY t."a", t."b" COLLATE "C" OFFSET $1 LIMIT 1`);
  expect(chunkHashQuery(plan, "analytics", false, false)).toBe(
    `SELECT count(*)::text AS n, coalesce(sum(hashtextextended((${rowText(plan, "analytics")}) COLLATE "C", 0)), 0)::text AS h FROM "fact_things" t WHERE t."_cdc_deleted_at" IS NULL`,
  );
  expect(chunkHashQuery({ ...plan, fastHash: false }, "source", false, false)).toContain(`sum(('x' || left(md5(${rowText(plan, "source")}), 16))::bit(64)::int8)`);
  expect(keyHashQuery(plan, "source", true, true)).toContain(`hashtextextended((${rowText(plan, "source")}) COLLATE "C", 0)::text AS h FROM "public"."things" t WHERE`);
  expect(keyHashQuery({ ...plan, fastHash: false }, "source", true, true)).toContain(`md5(${rowText(plan, "source")}) AS h FROM "public"."things" t WHERE`);
});

test("rows of listed keys: the source looks them up in its key types; the analytics side also returns positions and soft-deleted rows", () => {
  const s = rowsQuery(plan, "source");
  expect(s).toContain(`WHERE (t."a", t."b") IN (SELECT u.k0::integer, u.k1::text FROM unnest($1::text[], $2::text[]) AS u(k0, k1))`);
  expect(s).not.toContain("_cdc_commit_lsn");
  const a = rowsQuery(plan, "analytics");
  expect(a).toContain(`t._cdc_commit_lsn::text AS pc, t._cdc_lsn::text AS pl, t."_cdc_deleted_at" IS NULL AS live`);
  expect(a).not.toContain("IS NULL AND");
  expect(a).toContain(`(t."qty")::text AS c2`);
});

test("a key's text is the decoders' (JSON of its column texts)", () => {
  expect(keyTextOf(["1"])).toBe(`["1"]`);
  expect(keyTextOf(["1", null, 'a"b'])).toBe(`["1",null,"a\\"b"]`);
});
