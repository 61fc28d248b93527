// Addon behaviour against librdkafka's mock cluster; run by bun test and by node --test.
import assert from "node:assert/strict";
import { isUtf8 } from "node:buffer";
import { ApiKey, KafkaConsumer, KafkaError, KafkaProducer, librdkafkaFeatures, librdkafkaVersion, MockCluster, type MessageBatch } from "../src/kafka/index.ts";

const fast = { "fetch.wait.max.ms": 10, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500 };

interface Seen {
  partition: number;
  offset: number;
  key: string | null;
  value: string | null;
}

async function drain(c: KafkaConsumer, want: number, timeoutMs: number, onBatch?: (b: MessageBatch) => Promise<void>): Promise<Seen[]> {
  const out: Seen[] = [];
  const end = Date.now() + timeoutMs;
  while (out.length < want && Date.now() < end) {
    const b = await c.consume(1000, 200);
    for (let i = 0; i < b.count; i++)
      out.push({ partition: b.partition(i), offset: b.offset(i), key: b.key(i)?.toString() ?? null, value: b.value(i)?.toString() ?? null });
    await onBatch?.(b);
  }
  return out;
}

async function produceN(bootstrap: string, topic: string, n: number, from = 0): Promise<void> {
  const p = new KafkaProducer({ "bootstrap.servers": bootstrap });
  const msgs = Array.from({ length: n }, (_, i) => ({ key: `k${i + from}`, value: `v${i + from}` }));
  await p.produce(topic, msgs);
  const r = await p.flush(10_000);
  assert.equal(r.delivered, n);
  assert.deepEqual(r.failed, []);
  await p.close();
}

function nextOffsets(b: MessageBatch) {
  const m = new Map<string, { topic: string; partition: number; offset: number }>();
  for (let i = 0; i < b.count; i++) m.set(`${b.topic(i)}/${b.partition(i)}`, { topic: b.topic(i), partition: b.partition(i), offset: b.offset(i) + 1 });
  return [...m.values()];
}

export const cases: Array<[string, () => Promise<void>]> = [
  [
    "the addon carries librdkafka 2.15 with SSL, SASL and every compression codec built in",
    async () => {
      assert.match(librdkafkaVersion(), /^2\.15\.\d+$/);
      const features = librdkafkaFeatures();
      for (const f of ["ssl", "sasl_plain", "sasl_scram", "sasl_oauthbearer", "gzip", "snappy", "lz4", "zstd"]) assert.ok(features.includes(f), `${f} in ${features}`);
      // settings that arrived after Debian's 2.0.2
      const c = new KafkaConsumer({ "bootstrap.servers": "127.0.0.1:1", "group.id": "gv", "fetch.queue.backoff.ms": 10, "group.protocol": "classic" });
      await c.close();
    },
  ],
  [
    "produce then consume returns every message with its coordinates",
    async () => {
      const m = new MockCluster(1);
      m.createTopic("t1", 3);
      await produceN(m.bootstrapServers, "t1", 500);
      const c = new KafkaConsumer({ "bootstrap.servers": m.bootstrapServers, "group.id": "g1", ...fast });
      c.subscribe(["t1"]);
      const got = await drain(c, 500, 20_000);
      await c.close();
      m.close();
      assert.equal(got.length, 500);
      assert.deepEqual(new Set(got.map((g) => g.key)).size, 500);
      for (const g of got) assert.equal(g.value, `v${g.key!.slice(1)}`);
      const perPartition = new Map<number, number[]>();
      for (const g of got) perPartition.set(g.partition, [...(perPartition.get(g.partition) ?? []), g.offset]);
      for (const offs of perPartition.values()) assert.deepEqual(offs, offs.map((_, i) => i));
    },
  ],
  [
    "consume stops once it holds maxBytes (always taking one), so a few huge records are not all copied at once",
    async () => {
      const m = new MockCluster(1);
      m.createTopic("tb", 1);
      const p = new KafkaProducer({ "bootstrap.servers": m.bootstrapServers, "linger.ms": 50 });
      const big = Buffer.alloc(300_000, 0x61);
      await p.produce("tb", [...Array.from({ length: 5 }, (_, i) => ({ key: `b${i}`, value: big })), ...Array.from({ length: 100 }, (_, i) => ({ key: `s${i}`, value: "x".repeat(100) }))]);
      assert.deepEqual((await p.flush(10_000)).failed, []);
      await p.close();
      const c = new KafkaConsumer({ "bootstrap.servers": m.bootstrapServers, "group.id": "gb", ...fast });
      c.subscribe(["tb"]);
      const sizes: number[][] = [];
      let seen = 0;
      for (const end = Date.now() + 20_000; seen < 105 && Date.now() < end; ) {
        // wait for the whole set to be queued, so one call could take them all
        if (!seen) await new Promise((r) => setTimeout(r, 1000));
        const b = await c.consume(1000, 200, 250_000);
        if (!b.count) continue;
        sizes.push(Array.from({ length: b.count }, (_, i) => b.value(i)!.length));
        seen += b.count;
      }
      await c.close();
      m.close();
      assert.equal(seen, 105);
      // the huge ones one at a time (the first already passes 250 kB), the small ones together
      for (const s of sizes.slice(0, 5)) assert.deepEqual(s, [300_000]);
      assert.ok(sizes.length <= 7, `small records in few batches: ${sizes.map((s) => s.length)}`);
      assert.deepEqual(sizes.flat(), [...Array(5).fill(300_000), ...Array(100).fill(100)]);
    },
  ],
  [
    "tombstones, empty values and null keys stay distinguishable; headers round-trip",
    async () => {
      const m = new MockCluster(1);
      m.createTopic("t2", 1);
      const p = new KafkaProducer({ "bootstrap.servers": m.bootstrapServers });
      await p.produce("t2", [
        { key: "a", value: null },
        { key: "", value: "" },
        { key: null, value: "x", headers: [["h1", "one"], ["h2", null]] },
      ]);
      await p.flush();
      await p.close();
      const c = new KafkaConsumer({ "bootstrap.servers": m.bootstrapServers, "group.id": "g2", ...fast });
      c.subscribe(["^t2$"]);
      const raw: MessageBatch[] = [];
      const got = await drain(c, 3, 20_000, async (b) => void raw.push(b));
      await c.close();
      m.close();
      assert.deepEqual(got.map((g) => [g.key, g.value]), [["a", null], ["", ""], [null, "x"]]);
      const withHeaders = raw.find((b) => b.count && b.headers(b.count - 1).length)!;
      const h = withHeaders.headers(withHeaders.count - 1);
      assert.deepEqual(h.map(([k, v]) => [k, v?.toString() ?? null]), [["h1", "one"], ["h2", null]]);
    },
  ],
  [
    "text accessors decode keys and values as UTF-8, per message exactly as a lone decode would",
    async () => {
      const m = new MockCluster(1);
      const bad = Buffer.from([0x61, 0xff, 0x62, 0xc3]); // a lone invalid byte, and a truncated sequence at the end
      const split = [Buffer.from([0xe2, 0x82]), Buffer.from([0xac, 0x21])]; // "€" cut across two messages
      const messages: Array<Array<{ key: string | Uint8Array | null; value: string | Uint8Array | null }>> = [
        [{ key: "k1", value: '{"a":1}' }, { key: null, value: "plain" }, { key: "k3", value: null }, { key: "", value: "" }],
        [{ key: "k1", value: "x" }, { key: "ключ", value: "naïve €" }, { key: "k3", value: null }],
        [{ key: "k1", value: bad }, { key: "k2", value: "after" }],
        [{ key: "k1", value: split[0]! }, { key: "k2", value: split[1]! }],
      ];
      const p = new KafkaProducer({ "bootstrap.servers": m.bootstrapServers });
      for (const [i, msgs] of messages.entries()) {
        m.createTopic(`txt${i}`, 1);
        await p.produce(`txt${i}`, msgs);
      }
      await p.flush();
      await p.close();
      // one topic per consumer, so that each case is decoded as one buffer of its own
      const lone = (x: string | Uint8Array | null) => (x === null ? null : Buffer.from(x).toString("utf8"));
      await Promise.all(
        messages.map(async (msgs, i) => {
          const c = new KafkaConsumer({ "bootstrap.servers": m.bootstrapServers, "group.id": `gt${i}`, ...fast });
          c.subscribe([`txt${i}`]);
          const got: Array<[string | null, string | null, boolean, boolean]> = [];
          await drain(c, msgs.length, 20_000, async (b) => {
            for (let j = 0; j < b.count; j++) got.push([b.keyText(j), b.valueText(j), b.keyIsUtf8(j), b.valueIsUtf8(j)]);
          });
          await c.close();
          // valid alone, not only as part of the batch ("€" cut in two is valid only together)
          const utf8 = (x: string | Uint8Array | null) => x === null || isUtf8(Buffer.from(x));
          assert.deepEqual(got, msgs.map((x) => [lone(x.key), lone(x.value), utf8(x.key), utf8(x.value)]), `topic txt${i}`);
        }),
      );
      m.close();
    },
  ],
  [
    "a restarted consumer resumes from its committed offsets",
    async () => {
      const m = new MockCluster(1);
      m.createTopic("t3", 2);
      await produceN(m.bootstrapServers, "t3", 100);
      const props = { "bootstrap.servers": m.bootstrapServers, "group.id": "g3", ...fast };
      const c1 = new KafkaConsumer(props);
      c1.subscribe(["t3"]);
      const first = await drain(c1, 100, 20_000, (b) => c1.commit(nextOffsets(b)));
      assert.equal(first.length, 100);
      const committed = await c1.committed([{ topic: "t3", partition: 0 }, { topic: "t3", partition: 1 }]);
      assert.equal(committed.reduce((s, p) => s + p.offset, 0), 100);
      await c1.close();
      await produceN(m.bootstrapServers, "t3", 50, 100);
      const c2 = new KafkaConsumer(props);
      c2.subscribe(["t3"]);
      const second = await drain(c2, 50, 20_000);
      const extra = await drain(c2, 1, 1500);
      await c2.close();
      m.close();
      assert.deepEqual(second.map((g) => g.key).sort(), Array.from({ length: 50 }, (_, i) => `k${i + 100}`).sort());
      assert.equal(extra.length, 0);
    },
  ],
  [
    "a group of two rebalancing mid-stream loses nothing and, with commits, delivers each message to one member",
    async () => {
      const m = new MockCluster(1);
      m.createTopic("t4", 4);
      const props = { "bootstrap.servers": m.bootstrapServers, "group.id": "g4", ...fast };
      const seen: string[] = [];
      let uncommitted = 0;
      const rebalances: string[] = [];
      const handle = (c: KafkaConsumer) => async (b: MessageBatch) => {
        for (const r of b.rebalances) rebalances.push(r.type);
        for (let i = 0; i < b.count; i++) seen.push(b.key(i)!.toString());
        c.storeOffsets(nextOffsets(b));
        // librdkafka's mock coordinator refuses commits while a rebalance is in progress (real
        // brokers accept them from the revoke callback); such a batch may be delivered again.
        await c.commit().catch((e: KafkaError) => {
          if (e.code !== "ERR_REBALANCE_IN_PROGRESS" && e.code !== "ERR__NO_OFFSET") throw e;
          uncommitted += b.count;
        });
      };
      const a = new KafkaConsumer(props);
      a.subscribe(["t4"]);
      await produceN(m.bootstrapServers, "t4", 1000);
      await drain(a, 1000, 20_000, handle(a));
      const b = new KafkaConsumer(props);
      b.subscribe(["t4"]);
      const end = Date.now() + 30_000;
      const run = async (c: KafkaConsumer, until: () => boolean) => {
        const on = handle(c);
        while (!until() && Date.now() < end) await on(await c.consume(100, 100));
      };
      // the second half is produced while the group rebalances onto both members
      const rebalanced = () => rebalances.filter((r) => r === "assign").length >= 3;
      const producing = produceN(m.bootstrapServers, "t4", 500, 1000);
      await Promise.all([run(a, rebalanced), run(b, rebalanced), producing]);
      const producing2 = produceN(m.bootstrapServers, "t4", 500, 1500);
      const all = () => new Set(seen).size >= 2000;
      await Promise.all([run(a, all), run(b, all), producing2]);
      await Promise.all([a.close(), b.close()]);
      m.close();
      assert.equal(new Set(seen).size, 2000, "every message delivered");
      assert.ok(rebalances.includes("revoke"), "the group rebalanced");
      assert.ok(seen.length - 2000 <= uncommitted, `${seen.length - 2000} redelivered, only ${uncommitted} were not committed`);
    },
  ],
  [
    "consumption survives a broker going down and coming back",
    async () => {
      const m = new MockCluster(3);
      m.createTopic("t5", 3, 1);
      await produceN(m.bootstrapServers, "t5", 300);
      const c = new KafkaConsumer({ "bootstrap.servers": m.bootstrapServers, "group.id": "g5", ...fast });
      c.subscribe(["t5"]);
      const errors: string[] = [];
      const got = await drain(c, 100, 20_000);
      for (const id of [1, 2, 3]) m.brokerDown(id);
      const during = await drain(c, 10_000, 1500, async (b) => void errors.push(...b.errors.map((e) => e.code)));
      for (const id of [1, 2, 3]) m.brokerUp(id);
      await produceN(m.bootstrapServers, "t5", 300, 300);
      const rest = await drain(c, 600 - got.length - during.length, 30_000);
      await c.close();
      m.close();
      const all = [...got, ...during, ...rest];
      assert.equal(new Set(all.map((g) => g.key)).size, 600);
    },
  ],
  [
    "an unknown or invalid property fails with a typed error naming it",
    async () => {
      assert.throws(
        () => new KafkaConsumer({ "bootstrap.servers": "127.0.0.1:1", "group.id": "g", "no.such.property": 1 }),
        (e: unknown) => e instanceof KafkaError && e.code === "ERR__UNKNOWN_PROPERTY" && e.property === "no.such.property" && /no\.such\.property/.test(e.message),
      );
      assert.throws(
        () => new KafkaConsumer({ "bootstrap.servers": "127.0.0.1:1", "group.id": "g", "session.timeout.ms": "soon" }),
        (e: unknown) => e instanceof KafkaError && e.code === "ERR__INVALID_ARG" && e.property === "session.timeout.ms",
      );
      assert.throws(() => new KafkaConsumer({ "bootstrap.servers": "127.0.0.1:1" }), (e: unknown) => e instanceof KafkaError && e.property === "group.id");
    },
  ],
  [
    "seek, pause/resume, assignment and watermarks act on the live consumer",
    async () => {
      const m = new MockCluster(1);
      m.createTopic("t6", 1);
      await produceN(m.bootstrapServers, "t6", 20);
      const c = new KafkaConsumer({ "bootstrap.servers": m.bootstrapServers, "group.id": "g6", "statistics.interval.ms": 100, ...fast });
      c.subscribe(["t6"]);
      const first = await drain(c, 20, 20_000);
      assert.equal(first.length, 20);
      assert.deepEqual(c.assignment().map((p) => [p.topic, p.partition]), [["t6", 0]]);
      assert.deepEqual(await c.watermarks("t6", 0), { low: 0, high: 20 });
      const topics = await c.listTopics();
      assert.equal(topics.find((t) => t.topic === "t6")?.partitions, 1);
      assert.equal(topics.find((t) => t.topic === "never-created"), undefined);
      await c.seek([{ topic: "t6", partition: 0, offset: 15 }]);
      const again = await drain(c, 5, 10_000);
      assert.deepEqual(again.map((g) => g.offset), [15, 16, 17, 18, 19]);
      c.pause([{ topic: "t6", partition: 0 }]);
      await produceN(m.bootstrapServers, "t6", 5, 20);
      assert.equal((await drain(c, 1, 1000)).length, 0, "paused partition delivers nothing");
      c.resume([{ topic: "t6", partition: 0 }]);
      assert.equal((await drain(c, 5, 10_000)).length, 5);
      await new Promise((r) => setTimeout(r, 300));
      const stats = c.stats() as { type?: string } | null;
      assert.equal(stats?.type, "consumer");
      await c.close();
      await c.close();
      m.close();
      await assert.rejects(() => c.consume(), (e: unknown) => e instanceof KafkaError && e.code === "ERR__DESTROY");
    },
  ],
  [
    "closing while a consume call is waiting lets it return before the handle is freed",
    async () => {
      const m = new MockCluster(1);
      m.createTopic("t8", 1);
      const c = new KafkaConsumer({ "bootstrap.servers": m.bootstrapServers, "group.id": "g8", ...fast });
      c.subscribe(["t8"]);
      const pending = c.consume(100, 1500);
      await new Promise((r) => setTimeout(r, 100));
      await c.close();
      assert.equal((await pending).count, 0);
      await assert.rejects(() => c.consume(), (e: unknown) => e instanceof KafkaError && e.code === "ERR__DESTROY");
      m.close();
    },
  ],
  [
    "an injected broker error reaches the caller as a typed error, and the next request succeeds",
    async () => {
      const m = new MockCluster(1);
      m.createTopic("t7", 1);
      await produceN(m.bootstrapServers, "t7", 10);
      const c = new KafkaConsumer({ "bootstrap.servers": m.bootstrapServers, "group.id": "g7", ...fast });
      c.subscribe(["t7"]);
      assert.equal((await drain(c, 10, 20_000)).length, 10);
      m.pushRequestErrors(ApiKey.OffsetCommit, ["ERR_GROUP_AUTHORIZATION_FAILED"]);
      await assert.rejects(
        () => c.commit([{ topic: "t7", partition: 0, offset: 10 }]),
        (e: unknown) => e instanceof KafkaError && e.code === "ERR_GROUP_AUTHORIZATION_FAILED",
      );
      await c.commit([{ topic: "t7", partition: 0, offset: 10 }]);
      assert.equal((await c.committed([{ topic: "t7", partition: 0 }]))[0]!.offset, 10);
      assert.throws(() => m.pushRequestErrors(ApiKey.Fetch, ["ERR_NO_SUCH_ERROR"]), (e: unknown) => e instanceof KafkaError && /unknown Kafka error name/.test(e.message));
      await c.close();
      m.close();
    },
  ],
];
