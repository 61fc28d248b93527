import { expect, test } from "bun:test";
import type { Sql } from "postgres";
import { diffKeys, type Reader, scanTable } from "./chunks.ts";
import { Pace } from "./session.ts";
import type { TablePlan } from "./sql.ts";

const plan: TablePlan = {
  table: "t",
  sourceIdent: `"s"."t"`,
  analyticsIdent: `"t"`,
  key: [{ source: "id", target: "id", sqlType: "bigint", sourceType: "bigint", money: false, viaText: false, collateC: false }],
  columns: [
    { source: "id", target: "id", sqlType: "bigint", sourceType: "bigint", money: false, viaText: false },
    { source: "v", target: "v", sqlType: "text", sourceType: "text", money: false, viaText: false },
  ],
  softDelete: null,
  fastHash: true,
};

/** A table in memory that answers the scan's statements (single bigint key), counting the rows each returns. */
function fakeTable(rows: Map<number, string>) {
  const stats = { statements: 0, largestFetch: 0, keysFetched: 0 };
  const hash = (k: number, v: string) => [...`${k}:${v}`].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 1_000_003, 7);
  const sql = {
    async unsafe(q: string, params: string[] = []) {
      stats.statements++;
      let p = 0;
      const lo = /t\."id" > \$/.test(q) ? Number(params[p++]) : -Infinity;
      const hi = /t\."id" <= \$/.test(q) ? Number(params[p++]) : Infinity;
      const keys = [...rows.keys()].filter((k) => k > lo && k <= hi).sort((a, b) => a - b);
      if (q.includes(" OFFSET ")) {
        const k = keys[Number(params[p])];
        return k === undefined ? [] : [{ k0: String(k) }];
      }
      if (q.includes("count(*)")) return [{ n: String(keys.length), h: String(keys.reduce((s, k) => s + hash(k, rows.get(k)!), 0)) }];
      stats.largestFetch = Math.max(stats.largestFetch, keys.length);
      stats.keysFetched += keys.length;
      return keys.map((k) => ({ k0: String(k), h: String(hash(k, rows.get(k)!)) }));
    },
  };
  return { sql: sql as unknown as Sql, stats };
}

function reader(source: Map<number, string>, analytics: Map<number, string>, chunkRows = 100, maxCandidates = 100_000) {
  const s = fakeTable(source);
  const a = fakeTable(analytics);
  const r: Reader = { plan, src: s.sql, dst: a.sql, chunkRows, pace: { source: new Pace(1e12), analytics: new Pace(1e12) }, maxCandidates };
  return { r, s: s.stats, a: a.stats };
}

const table = (from: number, to: number, v = "x") => new Map(Array.from({ length: to - from + 1 }, (_, i) => [from + i, v] as [number, string]));
const found = (res: Awaited<ReturnType<typeof scanTable>>) => {
  const of = (kind: string) => [...res.candidates.values()].filter((c) => c.kind === kind).map((c) => Number(c.key[0])).sort((x, y) => x - y);
  return { missing: of("missing"), extra: of("extra"), different: of("different") };
};

test("equal tables: one chunk per chunk_rows source keys, boundaries from the source, nothing fetched", async () => {
  const { r, s, a } = reader(table(1, 1050), table(1, 1050));
  const res = await scanTable(r);
  expect(res).toMatchObject({ chunks: 11, chunksDiffering: 0, sourceRows: 1050, analyticsRows: 1050, truncated: false });
  expect(res.candidates.size).toBe(0);
  expect(s.keysFetched + a.keysFetched).toBe(0);
  // 11 boundary lookups and 11 hashes on the source, 11 hashes on analytics
  expect(s.statements).toBe(22);
  expect(a.statements).toBe(11);
});

test("only differing chunks are narrowed, to exactly the differing keys", async () => {
  const src = table(1, 1000);
  const dst = table(1, 1000);
  dst.delete(5);
  dst.set(250, "changed");
  dst.set(251, "changed");
  dst.set(100_000, "x"); // past the source's last key: the last chunk is open-ended
  dst.set(0, "x"); // before the first key
  src.delete(777);
  const { r, a } = reader(src, dst);
  const res = await scanTable(r);
  expect(found(res)).toEqual({ missing: [5], extra: [0, 777, 100_000], different: [250, 251] });
  expect(res.chunks).toBe(10);
  // (-inf, 100] with 0 and 5; (200, 300]; (701, 801] around 777; (901, +inf) with 100000
  expect(res.chunksDiffering).toBe(4);
  expect(a.keysFetched).toBeLessThanOrEqual(4 * 102);
  for (const c of res.candidates.values()) expect(c.keyText).toBe(JSON.stringify([String(c.key[0])]));
});

test("a range with far more rows on one side is split by that side's own boundaries: bounded fetches", async () => {
  const { r, a, s } = reader(table(1, 50), table(1, 5000));
  const res = await scanTable(r);
  expect(res.chunks).toBe(1);
  expect(found(res).extra.length).toBe(4950);
  expect(found(res).extra[0]).toBe(51);
  expect(a.largestFetch).toBeLessThanOrEqual(400);
  expect(s.largestFetch).toBeLessThanOrEqual(400);
});

test("an empty source against a full analytics table, and two empty tables", async () => {
  const one = await scanTable(reader(new Map(), table(1, 250), 100).r);
  expect(one).toMatchObject({ chunks: 1, sourceRows: 0, analyticsRows: 250 });
  expect(found(one).extra.length).toBe(250);
  const none = await scanTable(reader(new Map(), new Map()).r);
  expect(none).toMatchObject({ chunks: 1, chunksDiffering: 0, sourceRows: 0, analyticsRows: 0 });
});

test("narrowing stops collecting past maxCandidates and says so", async () => {
  const res = await scanTable(reader(table(1, 1000), table(1, 1000, "y"), 100, 250).r);
  expect(res.candidates.size).toBe(250);
  expect(res.truncated).toBe(true);
  // 1000 keys: ten full chunks and the empty open-ended one after the last boundary
  expect(res.chunks).toBe(11);
  expect(res.chunksDiffering).toBe(10);
});

test("diffKeys: missing, extra, different by key text", () => {
  const d = diffKeys(
    [
      { key: ["1"], h: "a" },
      { key: ["2"], h: "b" },
      { key: ["3"], h: "c" },
    ],
    [
      { key: ["2"], h: "b" },
      { key: ["3"], h: "x" },
      { key: ["4"], h: "d" },
    ],
  );
  expect(d).toEqual([
    { key: ["3"], keyText: `["3"]`, kind: "different", srcHash: "c" },
    { key: ["4"], keyText: `["4"]`, kind: "extra", srcHash: "" },
    { key: ["1"], keyText: `["1"]`, kind: "missing", srcHash: "a" },
  ]);
});
