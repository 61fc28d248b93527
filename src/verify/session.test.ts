import { expect, test } from "bun:test";
import { Stopped } from "../errors.ts";
import { formatLsn, Pace, sleep } from "./session.ts";

test("Pace keeps the average at the rate since the first read", async () => {
  let now = 1000;
  const pace = new Pace(1000, undefined, () => now);
  expect(pace.delayAfter(500)).toBe(500);
  await pace.take(0);
  now += 100;
  // 500 rows after 100 ms at 1000 rows/s: the next read waits until 500 ms
  expect(pace.delayAfter(500)).toBe(400);
  now += 400;
  await pace.take(500);
  expect(pace.delayAfter(0)).toBe(0);
  expect(pace.delayAfter(1000)).toBe(1000);
});

test("Pace really waits, and an abort ends the wait", async () => {
  const pace = new Pace(10_000);
  const t0 = performance.now();
  await pace.take(1000);
  expect(performance.now() - t0).toBeGreaterThanOrEqual(90);
  const ac = new AbortController();
  const slow = new Pace(1, ac.signal);
  const waiting = slow.take(100);
  ac.abort();
  expect(waiting).rejects.toBeInstanceOf(Stopped);
  expect(sleep(10, ac.signal)).rejects.toBeInstanceOf(Stopped);
});

test("LSNs print as PostgreSQL does", () => {
  expect(formatLsn(0x16b3748n)).toBe("0/16B3748");
  expect(formatLsn((0xan << 32n) | 0xffn)).toBe("A/FF");
});
