import { expect, test } from "bun:test";
import { kafkaRepairPosition } from "./repair.ts";

test("Kafka repair positions: just above what analytics holds for the key, else the snapshot position (0, R)", () => {
  const R = 5_000_000n;
  expect(kafkaRepairPosition([30_000_050n, 30_000_100n], R)).toEqual([30_000_050n, 30_000_101n]);
  expect(kafkaRepairPosition([0n, 2_000n], R)).toEqual([0n, 2_001n]);
  expect(kafkaRepairPosition(null, R)).toEqual([0n, R]);
  expect(kafkaRepairPosition([-1n, -1n], R)).toEqual([0n, R]);
  // above the stored change, below the next one of its transaction (records are at least 8 bytes apart) and any later transaction
  const [c, l] = kafkaRepairPosition([100n, 800n], R);
  const cmp = (a: readonly bigint[], b: readonly bigint[]) => (a[0]! !== b[0]! ? (a[0]! < b[0]! ? -1 : 1) : a[1]! < b[1]! ? -1 : a[1]! > b[1]! ? 1 : 0);
  expect(cmp([c, l], [100n, 800n])).toBe(1);
  expect(cmp([c, l], [100n, 808n])).toBe(-1);
  expect(cmp([c, l], [101n, 0n])).toBe(-1);
});
