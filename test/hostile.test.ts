// Large and undecodable records: each costs time linear in its size, is dead-lettered (raw bytes up
// to the cap, beyond it size, SHA-256 and the first bytes) or applied exactly, and never stalls the
// HTTP endpoints, the other partitions or shutdown; the daemon's RSS stays under 512 MiB.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KafkaProducer, MockCluster } from "../src/kafka/index.ts";
import { tempDir } from "./support/cleanup.ts";
import { envelope, keyOf, newClock } from "./support/debezium.ts";
import { analyticsDb, ROOT, sinkToml, TOPICS, waitFor } from "./support/harness.ts";
import { freePort, sharedCluster } from "./support/pg.ts";

const dir = tempDir("cdc-sink-hostile-");
let mock: MockCluster;
let producer: KafkaProducer;
beforeAll(() => {
  mock = new MockCluster(1);
  // large records compressed: the mock keeps at most 5 MiB per partition log
  producer = new KafkaProducer({ "bootstrap.servers": mock.bootstrapServers, "linger.ms": 2, "compression.codec": "zstd", "message.max.bytes": 200_000_000 });
});
afterAll(async () => {
  await producer.close();
  mock.close();
});

const MiB = 1 << 20;
const hwm = (pid: number) => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;

async function daemon(name: string, topic: string) {
  const pg = await sharedCluster();
  const url = await pg.createDatabase(name);
  const sql = await analyticsDb(url);
  const port = await freePort();
  const file = join(dir, `${name}.toml`);
  writeFileSync(file, sinkToml({ bootstrap: mock.bootstrapServers, db: url, group: name }).replace(`"${TOPICS.books}"`, `"${topic}"`).replace('listen = "127.0.0.1:0"', `listen = "127.0.0.1:${port}"`));
  const proc = Bun.spawn([process.execPath, `${ROOT}src/main.ts`, "run", "--config", file], { stdout: "ignore", stderr: "ignore", env: { ...process.env, CDC_SINK_LOG_LEVEL: '"warn"' } });
  const started = performance.now();
  let slowest = 0;
  let failed = 0;
  let probing = true;
  // /healthz polled throughout: it must always answer, and fast
  const prober = (async () => {
    while (probing) {
      const t0 = performance.now();
      try {
        const r = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2000) });
        if (r.status !== 200) failed++;
      } catch {
        if (proc.exitCode === null && performance.now() > started + 3000) failed++;
      }
      slowest = Math.max(slowest, performance.now() - t0);
      await Bun.sleep(100);
    }
  })();
  return {
    sql,
    proc,
    async stop() {
      probing = false;
      await prober;
      proc.kill("SIGTERM");
      const t0 = performance.now();
      const code = await proc.exited;
      return { code, stopMs: performance.now() - t0, slowestHealthzMs: slowest, healthzFailures: failed };
    },
  };
}

test("20 records of 1 MiB random bytes among 1,000 good events: every good event applied, each bad one dead-lettered with its bytes; /healthz and SIGTERM never stall", async () => {
  const topic = "hostile.books.random";
  mock.createTopic(topic, 60);
  const clock = newClock();
  const bad = Array.from({ length: 20 }, () => randomBytes(MiB));
  await producer.produce(topic, bad.map((value, i) => ({ key: keyOf(100_000 + i), value, partition: i })));
  await producer.produce(
    topic,
    Array.from({ length: 1000 }, (_, i) => ({ key: keyOf(i), value: JSON.stringify(envelope(clock, "books", "c", { after: { id: i, title: `b${i}` } })), partition: 20 + (i % 40) })),
  );
  expect((await producer.flush(60_000)).failed).toEqual([]);
  const d = await daemon("random", topic);
  await waitFor("good events applied and bad ones dead-lettered", async () => {
    const [r] = await d.sql`SELECT (SELECT count(*) FROM dim_books)::int AS rows, (SELECT count(*) FROM cdc_sink.dead_letters)::int AS dead`;
    return r!.rows === 1000 && r!.dead === 20;
  }, 60_000);
  const peak = hwm(d.proc.pid);
  const s = await d.stop();
  expect(s.code).toBe(0);
  expect(s.healthzFailures).toBe(0);
  expect(s.stopMs).toBeLessThan(10_000);
  const dead = await d.sql`SELECT error_code, value_size::int AS size, value_sha256 AS sha, length(value_bytes)::int AS kept FROM cdc_sink.dead_letters ORDER BY part`;
  const shas = new Set(bad.map((b) => createHash("sha256").update(b).digest("hex")));
  expect(dead.every((r) => r.error_code === "INVALID_UTF8" && r.size === MiB && r.kept === MiB)).toBe(true);
  expect((await d.sql`SELECT encode(sha256(value_bytes), 'hex') AS h FROM cdc_sink.dead_letters`).every((r) => shas.has(r.h))).toBe(true);
  console.error(`hostile: 20 x 1 MiB random among 1000 good: peak RSS ${(peak / MiB).toFixed(0)} MiB, slowest /healthz ${s.slowestHealthzMs.toFixed(0)} ms, SIGTERM to exit ${s.stopMs.toFixed(0)} ms`);
  await d.sql.end();
}, 120_000);

test("records of 1, 10 and 64 MiB, valid and not UTF-8: applied exactly or dead-lettered capped (size, SHA-256, first bytes); RSS under 512 MiB", async () => {
  const topic = "hostile.books.large";
  mock.createTopic(topic, 6);
  const clock = newClock();
  const sizes = [1, 10, 64];
  const text = (mib: number) => "x".repeat(mib * MiB - 1) + "y";
  const invalid = (mib: number) => Buffer.concat([Buffer.from('{"op":"c","after":{"id":1,"title":"'), Buffer.alloc(mib * MiB, 0xfe)]);
  for (const [i, mib] of sizes.entries()) {
    await producer.produce(topic, [{ key: keyOf(i), value: JSON.stringify(envelope(clock, "books", "c", { after: { id: i, title: text(mib) } })), partition: i }]);
    await producer.produce(topic, [{ key: keyOf(10 + i), value: invalid(mib), partition: 3 + i }]);
  }
  expect((await producer.flush(60_000)).failed).toEqual([]);
  const d = await daemon("large", topic);
  await waitFor("large records applied or dead-lettered", async () => {
    const [r] = await d.sql`SELECT (SELECT count(*) FROM dim_books)::int AS rows, (SELECT count(*) FROM cdc_sink.dead_letters)::int AS dead`;
    return r!.rows === 3 && r!.dead === 3;
  }, 120_000);
  const peak = hwm(d.proc.pid);
  const s = await d.stop();
  expect(s.code).toBe(0);
  expect(s.healthzFailures).toBe(0);
  const stored = await d.sql`SELECT id::int, length(title)::int AS n, md5(title) AS h FROM dim_books ORDER BY id`;
  expect(stored.map((r) => [r.id, r.n, r.h])).toEqual(sizes.map((mib, i) => [i, mib * MiB, createHash("md5").update(text(mib)).digest("hex")]));
  const dead = await d.sql`SELECT value_size::int AS size, value_sha256 AS sha, length(value_bytes)::int AS kept, error_code FROM cdc_sink.dead_letters ORDER BY value_size`;
  expect(dead.map((r) => [r.error_code, r.size, r.kept, r.sha])).toEqual(
    sizes.map((mib) => {
      const b = invalid(mib);
      // the default cap is 1 MiB: a larger value keeps its first KiB
      return ["INVALID_UTF8", b.length, b.length > MiB ? 1024 : b.length, createHash("sha256").update(b).digest("hex")];
    }),
  );
  console.error(`hostile: 1/10/64 MiB valid and invalid: peak RSS ${(peak / MiB).toFixed(0)} MiB, slowest /healthz ${s.slowestHealthzMs.toFixed(0)} ms`);
  expect(peak).toBeLessThan(512 * MiB);
  await d.sql.end();
}, 180_000);
