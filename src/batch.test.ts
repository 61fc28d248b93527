import { expect, test } from "bun:test";
import { ChangeBatch as Batch } from "./batch.ts";
import { type Change, Kind, type Target } from "./model.ts";

const target = { mapping: { truncate: "truncate" }, table: { name: "t" }, key: ["id"] } as unknown as Target;
const coord = { stream: "s", part: "p", position: 0n };
const up = (id: number, posTx: number, pos: number, cols: Record<string, string>): Change => ({
  target,
  kind: Kind.Upsert,
  key: [String(id)],
  keyText: `["${id}"]`,
  cols: [...Object.keys(cols), "id"],
  vals: [...Object.values(cols), String(id)],
  commitLsn: BigInt(posTx),
  lsn: BigInt(pos),
  sourceTs: 0,
  coord,
});
const del = (id: number, posTx: number, pos: number): Change => ({ target, kind: Kind.Delete, key: [String(id)], keyText: `["${id}"]`, commitLsn: BigInt(posTx), lsn: BigInt(pos), sourceTs: 0, coord });
const pending = (b: Batch) => [...b.tables.get("t")!.pending.values()];
const limits = { maxEvents: 100, maxBytes: 1 << 20, maxLatencyMs: 50 };

test("coalescing keeps the newest source position per key, whatever the arrival order", () => {
  const b = new Batch(limits);
  b.add(up(1, 500, 1, { a: "streamed" }), 0);
  b.add(up(1, 0, 100, { a: "snapshot" }), 0);
  b.add(del(2, 600, 1), 0);
  b.add(up(2, 0, 100, { a: "snapshot" }), 0);
  b.add(up(3, 0, 100, { a: "snapshot" }), 0);
  b.add(up(3, 700, 1, { a: "streamed" }), 0);
  const p = pending(b);
  expect(p.map((c) => [c.keyText, c.kind, c.vals?.[0]])).toEqual([
    ['["1"]', Kind.Upsert, "streamed"],
    ['["2"]', Kind.Delete, undefined],
    ['["3"]', Kind.Upsert, "streamed"],
  ]);
});

test("a delete then an insert is an insert; a tombstone after its delete keeps the delete's position", () => {
  const b = new Batch(limits);
  b.add(del(1, 10, 1), 0);
  b.add(up(1, 11, 1, { a: "x" }), 0);
  b.add(del(2, 12, 1), 0);
  b.add(del(2, -1, -1), 0);
  expect(pending(b).map((c) => [c.kind, c.commitLsn])).toEqual([
    [Kind.Upsert, 11n],
    [Kind.Delete, 12n],
  ]);
});

test("an update with unchanged-TOAST columns merges with the pending change of its key", () => {
  const b = new Batch(limits);
  b.add(up(1, 10, 1, { a: "1", big: "long text" }), 0);
  b.add({ ...up(1, 11, 1, { a: "2" }), partial: true }, 0);
  const [c] = pending(b);
  expect(Object.fromEntries(c!.cols!.map((k, i) => [k, c!.vals![i]]))).toEqual({ a: "2", big: "long text", id: "1" });
  expect(c!.partial).toBeUndefined();
  // a partial update without its row pending stays partial: it may only update the stored row
  b.add({ ...up(2, 12, 1, { a: "3" }), partial: true }, 0);
  expect(pending(b)[1]!.partial).toBe(true);
});

test("a truncate drops what is pending for its table; limits decide when the batch is full or due", () => {
  const b = new Batch({ maxEvents: 5, maxBytes: 1 << 20, maxLatencyMs: 50 });
  b.add(up(1, 10, 1, { a: "1" }), 1000);
  b.add({ ...del(0, 11, 1), kind: Kind.Truncate, key: [], keyText: "" }, 1000);
  b.add(up(2, 12, 1, { a: "2" }), 1000);
  expect(pending(b).map((c) => c.keyText)).toEqual(['["2"]']);
  expect(b.truncates.has("t")).toBe(true);
  b.advance(coord, 1n, 10, 1000);
  expect(b.full(1000)).toBe(false);
  expect(b.due(1049)).toBe(false);
  expect(b.due(1050)).toBe(true);
  for (let i = 2; i <= 4; i++) b.advance(coord, BigInt(i), 10, 1001);
  expect(b.full(1001)).toBe(false);
  b.advance(coord, 5n, 10, 1002);
  expect(b.full(1002)).toBe(true);
  expect(b.parts.get("s\u0000p")).toEqual({ stream: "s", part: "p", first: 0n, next: 5n });
});

test("soft delete: a delete of a row still pending keeps the row, flagged with the delete's time and position", () => {
  const soft = { ...target, mapping: { truncate: "truncate", delete_mode: "soft" } } as unknown as Target;
  const b = new Batch(limits);
  b.add({ ...up(1, 10, 1, { a: "x" }), target: soft }, 0);
  b.add({ ...del(1, 20, 1), target: soft, sourceTs: 1234 }, 0);
  b.add({ ...del(1, -1, -1), target: soft }, 0);
  b.add({ ...up(2, 10, 1, { a: "y" }), target: soft }, 0);
  b.add({ ...del(2, 20, 1), target: soft }, 0);
  b.add({ ...up(2, 30, 1, { a: "again" }), target: soft }, 0);
  const p = [...b.tables.get("t")!.pending.values()];
  expect(p.map((c) => [c.keyText, c.kind, c.vals?.[0], c.commitLsn, c.deletedAt])).toEqual([
    ['["1"]', Kind.Upsert, "x", 20n, 1234],
    ['["2"]', Kind.Upsert, "again", 30n, undefined],
  ]);
  const hard = new Batch(limits);
  hard.add(up(1, 10, 1, { a: "x" }), 0);
  hard.add(del(1, 20, 1), 0);
  expect(pending(hard).map((c) => [c.kind, c.deletedAt])).toEqual([[Kind.Delete, undefined]]);
});
