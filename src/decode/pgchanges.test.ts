import { expect, test } from "bun:test";
import { pgw } from "../../test/support/pgwire.ts";
import { ChangeBatch } from "../batch.ts";
import type { Mapping } from "../config.ts";
import { Kind, type Column, type Target } from "../model.ts";
import { resolveTarget } from "../sink/targets.ts";
import { createPgChangeDecoder, type PgRecord } from "./pgchanges.ts";
import { parsePgOutput } from "./pgoutput.ts";

const column = (name: string, type = "text"): Column => ({ name, type, isArray: false, scale: null, precision: null, sqlType: type, castType: type, notNull: false, hasDefault: false });
function target(extra: Partial<Mapping> = {}): Target {
  const mapping = { source: "ecom", source_table: "public.orders", table: "fact_orders", rename: {}, delete_mode: "hard", soft_delete_column: "_cdc_deleted_at", truncate: "ignore", ...extra } as Mapping;
  const cols = ["id", "status", "note", "_cdc_commit_lsn", "_cdc_lsn", "_cdc_synced_at"].map((c) => column(c));
  return resolveTarget(mapping, { name: "fact_orders", ident: '"fact_orders"', columns: new Map(cols.map((c) => [c.name, c])), primaryKey: ["id"], uniqueKeys: [["id"]] });
}
const rel = (cols = ["id", "status", "note"]) => pgw.relation(16384, "public", "orders", cols.map((name) => ({ name, key: name === "id" })));
const xlog = (b: Buffer): PgRecord => ({ kind: "xlog", source: "ecom", msg: parsePgOutput(b) });
const limits = { maxEvents: 1000, maxBytes: 1 << 20, maxLatencyMs: 1000 };
const T = Date.UTC(2024, 0, 1);
const info = { name: "ecom", stream: "pg:slot" };

/** Decodes every record, answering each schema request with `answer` (by default: the table as it is). */
function decodeAll(d: ReturnType<typeof createPgChangeDecoder>, items: PgRecord[], b: ChangeBatch, answer?: (t: Target) => Target) {
  const requests = [];
  for (let from = 0; ; ) {
    const stop = d.decode({ count: items.length, items }, b, from, items.length);
    if (!stop) return requests;
    requests.push(stop.request);
    d.retarget(answer ? answer(stop.request.target) : stop.request.target);
    from = stop.at;
  }
}

test("a transaction's changes are positioned (commit LSN, index); its COMMIT moves the checkpoint to its end", () => {
  const d = createPgChangeDecoder({ sources: [info], targets: [target()] });
  const b = new ChangeBatch(limits);
  const items: PgRecord[] = [
    { kind: "restart", source: "ecom", from: 0x100n },
    xlog(rel()),
    xlog(pgw.begin(0x200n, T, 1)),
    xlog(pgw.insert(16384, ["1", "new", "a"])),
    xlog(pgw.update(16384, ["2", "paid", undefined])),
    xlog(pgw.delete(16384, ["3", null, null])),
    xlog(pgw.commit(0x200n, 0x230n, T)),
  ];
  expect(decodeAll(d, items, b)).toHaveLength(1);
  const cs = b.changes();
  expect(cs.map((c) => [c.kind, c.key, c.commitLsn, c.lsn, c.sourceTs])).toEqual([
    [Kind.Upsert, ["1"], 0x200n, 1n, T],
    [Kind.Upsert, ["2"], 0x200n, 2n, T],
    [Kind.Delete, ["3"], 0x200n, 3n, T],
  ]);
  // the unchanged TOAST column is left out, so the stored value stays
  expect(cs[1]!.cols).toEqual(["id", "status"]);
  expect(b.parts.get("pg:slot\u0000ecom")).toEqual({ stream: "pg:slot", part: "ecom", first: 0x200n, next: 0x230n });
});

test("a truncate goes to the batch, which applies the mapping's policy; the snapshot's end moves its checkpoint part", () => {
  const d = createPgChangeDecoder({ sources: [info], targets: [target({ truncate: "truncate" })] });
  const b = new ChangeBatch(limits);
  const items: PgRecord[] = [
    { kind: "restart", source: "ecom", from: 0x100n },
    xlog(rel()),
    xlog(pgw.begin(0x300n, T, 1)),
    xlog(pgw.truncate([16384])),
    xlog(pgw.commit(0x300n, 0x330n, T)),
    { kind: "snapshot-done", source: "ecom" },
  ];
  decodeAll(d, items, b);
  expect(b.truncates.has("fact_orders")).toBe(true);
  expect(b.parts.get("pg:slot\u0000ecom#snapshot")).toEqual({ stream: "pg:slot", part: "ecom#snapshot", first: 0n, next: 1n });
});

test("the first relation of a table, and a changed one, stop decoding with its columns and types; decoding goes on with the new target", () => {
  const t = target();
  const d = createPgChangeDecoder({ sources: [info], targets: [t] });
  const b = new ChangeBatch(limits);
  const pages = pgw.relation(16384, "public", "orders", [{ name: "id", key: true }, { name: "status" }, { name: "pages", typeOid: 23 }]);
  const items: PgRecord[] = [
    { kind: "restart", source: "ecom", from: 0x100n },
    xlog(pages),
    xlog(pgw.begin(0x200n, T, 1)),
    xlog(pgw.insert(16384, ["1", "x", "474"])),
    xlog(pgw.commit(0x200n, 0x230n, T)),
  ];
  const stop = d.decode({ count: items.length, items }, b, 0, items.length);
  expect(stop).toEqual({
    at: 2,
    request: {
      target: t,
      add: [
        { source: "id", column: "id", typeOid: 25, typmod: -1 },
        { source: "status", column: "status", typeOid: 25, typmod: -1 },
        { source: "pages", column: "pages", typeOid: 23, typmod: -1 },
      ],
    },
  });
  const wider = resolveTarget(t.mapping, { ...t.table, columns: new Map([...t.table.columns, ["pages", column("pages", "int4")]]) });
  d.retarget(wider);
  expect(d.decode({ count: items.length, items }, b, stop!.at, items.length)).toBeUndefined();
  const [c] = b.changes();
  expect(Object.fromEntries(c!.cols!.map((k, i) => [k, c!.vals![i]]))).toEqual({ id: "1", status: "x", pages: "474" });
  // the same relation again (a reconnect) asks nothing; a column retyped asks again
  const again: PgRecord[] = [xlog(pages), xlog(pgw.relation(16384, "public", "orders", [{ name: "id", key: true }, { name: "status" }, { name: "pages", typeOid: 20 }]))];
  expect(d.decode({ count: 2, items: again }, b, 0, 2)).toEqual({ at: 2, request: expect.objectContaining({ add: expect.arrayContaining([{ source: "pages", column: "pages", typeOid: 20, typmod: -1 }]) }) });
});

test("a stopped mapping's changes are held: not applied, and the source's checkpoint stays before their transaction while other tables go on", () => {
  const orders = target();
  const itemsMapping = { ...orders.mapping, source_table: "public.order_items", table: "fact_order_items" } as Mapping;
  const items = resolveTarget(itemsMapping, { ...orders.table, name: "fact_order_items", ident: '"fact_order_items"' });
  const d = createPgChangeDecoder({ sources: [info], targets: [orders, items] });
  const b = new ChangeBatch(limits);
  const recs: PgRecord[] = [
    { kind: "restart", source: "ecom", from: 0x100n },
    xlog(rel()),
    xlog(pgw.relation(16385, "public", "order_items", [{ name: "id", key: true }, { name: "status" }, { name: "note" }])),
    xlog(pgw.begin(0x200n, T, 1)),
    xlog(pgw.insert(16384, ["1", "a", null])),
    xlog(pgw.commit(0x200n, 0x230n, T)),
    xlog(pgw.begin(0x300n, T, 2)),
    xlog(pgw.insert(16385, ["7", "held", null])),
    xlog(pgw.commit(0x300n, 0x330n, T)),
    xlog(pgw.begin(0x400n, T, 3)),
    xlog(pgw.insert(16384, ["2", "b", null])),
    xlog(pgw.commit(0x400n, 0x430n, T)),
  ];
  decodeAll(d, recs, b, (t) => (t.table.name === "fact_order_items" ? { ...t, stopped: "a type change it cannot apply" } : t));
  expect(b.changes().map((c) => [c.target.table.name, c.key[0]])).toEqual([
    ["fact_orders", "1"],
    ["fact_orders", "2"],
  ]);
  // resumes at the end of the transaction before the first held change: a restart reads it again
  expect(b.parts.get("pg:slot\u0000ecom")!.next).toBe(0x230n);
  const next = new ChangeBatch(limits);
  const later: PgRecord[] = [xlog(pgw.begin(0x500n, T, 4)), xlog(pgw.insert(16384, ["3", "c", null])), xlog(pgw.commit(0x500n, 0x530n, T))];
  d.decode({ count: later.length, items: later }, next, 0, later.length);
  expect(next.changes().map((c) => c.key[0])).toEqual(["3"]);
  expect(next.parts.get("pg:slot\u0000ecom")!.next).toBe(0x230n);
});

test("after a reconnect, a transaction sent again replaces its earlier part instead of doubling it", () => {
  const d = createPgChangeDecoder({ sources: [info], targets: [target()] });
  const b = new ChangeBatch(limits);
  const first: PgRecord[] = [{ kind: "restart", source: "ecom", from: 0x100n }, xlog(rel()), xlog(pgw.begin(0x200n, T, 1)), xlog(pgw.insert(16384, ["1", "a", null]))];
  decodeAll(d, first, b);
  const again: PgRecord[] = [
    { kind: "restart", source: "ecom", from: 0x100n },
    xlog(rel()),
    xlog(pgw.begin(0x200n, T, 1)),
    xlog(pgw.insert(16384, ["1", "a", null])),
    xlog(pgw.insert(16384, ["2", "b", null])),
    xlog(pgw.commit(0x200n, 0x230n, T)),
  ];
  decodeAll(d, again, b);
  expect(b.changes().map((c) => [c.key[0], c.lsn])).toEqual([
    ["1", 1n],
    ["2", 2n],
  ]);
  expect(b.parts.get("pg:slot\u0000ecom")!.next).toBe(0x230n);
});

test("a value its numeric(p,s) column would round is a dead letter naming the column, never stored rounded; the rest of the transaction applies", () => {
  const mapping = { source: "ecom", source_table: "public.orders", table: "fact_orders", rename: {}, delete_mode: "hard", soft_delete_column: "_cdc_deleted_at", truncate: "ignore" } as Mapping;
  const cols = [column("id"), { ...column("amount", "numeric"), scale: 2, precision: 12 }, column("_cdc_commit_lsn"), column("_cdc_lsn"), column("_cdc_synced_at")];
  const t = resolveTarget(mapping, { name: "fact_orders", ident: '"fact_orders"', columns: new Map(cols.map((c) => [c.name, c])), primaryKey: ["id"], uniqueKeys: [["id"]] });
  const d = createPgChangeDecoder({ sources: [info], targets: [t] });
  const b = new ChangeBatch(limits);
  decodeAll(d, [
    { kind: "restart", source: "ecom", from: 0x100n },
    xlog(pgw.relation(16384, "public", "orders", [{ name: "id", key: true }, { name: "amount", key: false }])),
    xlog(pgw.begin(0x200n, T, 1)),
    xlog(pgw.insert(16384, ["1", "1.2345"])),
    xlog(pgw.insert(16384, ["2", "1.2300"])),
    xlog(pgw.commit(0x200n, 0x230n, T)),
  ], b);
  expect(b.changes().map((c) => [c.key, c.vals])).toEqual([[["2"], ["2", "1.2300"]]]);
  expect(b.deadLetters.map((x) => [x.key, x.code, x.error, x.value])).toEqual([
    ['["1"]', "DECODE", `column amount: "1.2345" has more digits after the point than the column's scale 2 keeps (it would be rounded)`, '{"id":"1","amount":"1.2345"}'],
  ]);
  expect(b.parts.get("pg:slot\u0000ecom")).toEqual({ stream: "pg:slot", part: "ecom", first: 0x200n, next: 0x230n });
});
