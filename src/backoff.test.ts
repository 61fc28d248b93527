import { expect, test } from "bun:test";
import { Backoff, retry } from "./backoff.ts";
import { Stopped } from "./errors.ts";

test("waits double up to the cap, each jittered within [d/2, d]", () => {
  const b = new Backoff({ initialMs: 100, maxMs: 500 });
  const waits = Array.from({ length: 6 }, () => b.next());
  [100, 200, 400, 500, 500, 500].forEach((d, i) => {
    expect(waits[i]!).toBeGreaterThanOrEqual(d / 2);
    expect(waits[i]!).toBeLessThanOrEqual(d);
  });
  b.reset();
  expect(b.next()).toBeLessThanOrEqual(100);
});

test("retry runs until success, reports each failure, and an abort ends it with Stopped", async () => {
  const seen: number[] = [];
  const v = await retry(
    async (attempt) => {
      if (attempt < 3) throw new Error(`fail ${attempt}`);
      return "ok";
    },
    { policy: { initialMs: 1, maxMs: 2 }, onError: (_e, attempt) => seen.push(attempt) },
  );
  expect(v).toBe("ok");
  expect(seen).toEqual([1, 2]);

  const ac = new AbortController();
  const t0 = Date.now();
  const p = retry(
    async () => {
      throw new Error("down");
    },
    { policy: { initialMs: 10_000, maxMs: 10_000 }, signal: ac.signal, onError: () => setTimeout(() => ac.abort(), 5) },
  );
  await expect(p).rejects.toBeInstanceOf(Stopped);
  expect(Date.now() - t0).toBeLessThan(1000);

  const giveUp = retry(async () => Promise.reject(new Error("fatal")), {
    policy: { initialMs: 1, maxMs: 1 },
    onError: (e) => {
      throw e;
    },
  });
  await expect(giveUp).rejects.toThrow("fatal");
});
