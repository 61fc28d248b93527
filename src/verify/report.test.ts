import { expect, test } from "bun:test";
import { formatReport, formatSummary, reportJson, showKey } from "./report.ts";
import type { TableReport } from "./verify.ts";

const base: TableReport = {
  table: "fact_orders",
  mode: "postgres",
  source: "ecom",
  sourceTable: "public.orders",
  status: "different",
  chunks: 12,
  chunksDiffering: 2,
  sourceRows: 1000,
  analyticsRows: 1001,
  missing: [{ key: ["10"], keyText: `["10"]`, kind: "missing" }],
  extra: [1, 2, 3].map((i) => ({ key: [String(900 + i)], keyText: `["${900 + i}"]`, kind: "extra" as const })),
  different: [{ key: ["11"], keyText: `["11"]`, kind: "different", columns: ["total_amount", "currency"] }],
  unconfirmed: [],
  truncated: false,
  notCompared: [],
  elapsedMs: 1234,
};

test("a table's lines: figures, then keys by kind (the first N), differing columns, never values", () => {
  expect(formatReport(base, 2)).toEqual([
    "fact_orders <- ecom public.orders: DIFFERENT — 12 chunks (2 differing), 1000 source rows, 1001 analytics rows, 1.23 s",
    "  missing   1 (in the source, not in analytics): 10",
    "  extra     3 (in analytics, not in the source): 901, 902, … 1 more",
    "  different 1: 11 (total_amount, currency)",
  ]);
  expect(formatReport({ ...base, status: "error", reason: "connect ECONNREFUSED" })).toEqual(["fact_orders <- ecom public.orders: COULD NOT COMPARE: connect ECONNREFUSED"]);
  expect(showKey(["1", "a"])).toBe("(1, a)");
});

test("summary and JSON", () => {
  const run = { tables: [base, { ...base, table: "dim_books", status: "equal" as const, missing: [], extra: [], different: [] }], status: 1 as const, elapsedMs: 2000 };
  expect(formatSummary(run)).toBe("verify: 2 tables compared, 1 with differences (5 keys) in 2.00 s; exit 1");
  const doc = reportJson(run, 1);
  expect(doc.status).toBe(1);
  expect(doc.tables[0]!.extra).toEqual({ count: 3, keys: [{ key: ["901"] }] });
  expect(doc.tables[0]!.different).toEqual({ count: 1, keys: [{ key: ["11"], columns: ["total_amount", "currency"] }] });
});
