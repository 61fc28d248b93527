// 1M messages of ~200 bytes from the mock cluster into JS, several rounds in one process (RSS must stay flat).
import { KafkaConsumer, KafkaProducer, MockCluster } from "../src/kafka/native.ts";

const N = Number(process.env.BENCH_MESSAGES ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PARTITIONS = 64; // the mock caps each partition's log at 5 MiB and silently drops the oldest

export async function run() {
  const mock = new MockCluster(1);
  const topic = "bench";
  mock.createTopic(topic, PARTITIONS);
  const producer = new KafkaProducer({ "bootstrap.servers": mock.bootstrapServers, "linger.ms": 20, "batch.num.messages": 10000, "queue.buffering.max.messages": 1_000_000 });
  const value = Buffer.alloc(190, "x");
  const chunk = 50_000;
  const t0 = performance.now();
  for (let sent = 0; sent < N; sent += chunk) {
    const n = Math.min(chunk, N - sent);
    const keyLens = new Int32Array(n).fill(8);
    const valueLens = new Int32Array(n).fill(value.length);
    const partitions = new Int32Array(n).map((_, i) => (sent + i) % PARTITIONS);
    const keys = Buffer.alloc(8 * n);
    for (let i = 0; i < n; i++) keys.write(String(sent + i).padStart(8, "0"), i * 8);
    await producer.produceRaw(topic, partitions, keys, keyLens, Buffer.concat(Array(n).fill(value)), valueLens);
  }
  const dr = await producer.flush(120_000);
  await producer.close();
  if (dr.failed.length || dr.delivered !== N) throw new Error(`produce: ${dr.delivered} delivered, ${dr.failed.length} failed`);
  console.error(`produced ${N} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const check = new KafkaConsumer({ "bootstrap.servers": mock.bootstrapServers, "group.id": "bench-check" });
  let kept = 0;
  for (let p = 0; p < PARTITIONS; p++) {
    const w = await check.watermarks(topic, p);
    kept += w.high - w.low;
  }
  await check.close();
  if (kept !== N) throw new Error(`the mock cluster kept ${kept} of ${N} messages: use more partitions`);

  // columnar: every message's coordinates and length read from JS; slices: a Buffer per value as well
  const rounds: Array<{ mode: string; msgPerSec: number; rssMiB: number }> = [];
  for (let r = 0; r < ROUNDS * 2; r++) {
    const mode = r % 2 === 0 ? "columnar" : "slices";
    const c = new KafkaConsumer({
      "bootstrap.servers": mock.bootstrapServers,
      "group.id": `bench-${r}`,
      "fetch.wait.max.ms": 10,
      "queued.max.messages.kbytes": 262144,
      "fetch.max.bytes": 104857600,
      "max.partition.fetch.bytes": 8388608,
      "fetch.error.backoff.ms": 10,
    });
    c.subscribe([topic]);
    let got = 0;
    let bytes = 0;
    let checksum = 0; // reads every message's coordinates from JS
    let start = 0;
    const deadline = Date.now() + 120_000;
    while (got < N) {
      if (Date.now() > deadline) throw new Error(`round ${r + 1}: only ${got} of ${N} messages consumed in 120 s`);
      const b = await c.consume(100_000, 1000);
      if (b.count && !start) start = performance.now();
      if (mode === "columnar")
        for (let i = 0; i < b.count; i++) {
          bytes += b.valueLength(i);
          checksum += b.partition(i) + b.offset(i);
        }
      else for (let i = 0; i < b.count; i++) bytes += b.value(i)!.length;
      got += b.count;
    }
    const secs = (performance.now() - start) / 1000;
    await c.close();
    Bun.gc(true);
    const rssMiB = Math.round(process.memoryUsage().rss / 1048576);
    if (mode === "columnar" && checksum <= 0) throw new Error("no coordinates read");
    rounds.push({ mode, msgPerSec: Math.round(got / secs), rssMiB });
    console.error(`round ${r + 1} (${mode}): ${got} messages (${(bytes / 1048576).toFixed(0)} MiB values) in ${secs.toFixed(2)} s = ${Math.round(got / secs)} msg/s, rss ${rssMiB} MiB`);
  }
  mock.close();
  const best = (mode: string) => Math.max(...rounds.filter((r) => r.mode === mode).map((r) => r.msgPerSec));
  const rss = rounds.map((r) => r.rssMiB);
  return {
    bench: "kafka-consume",
    messages: N,
    messageBytes: 8 + value.length,
    msgPerSec: best("columnar"),
    msgPerSecWithBufferSlices: best("slices"),
    rssMiB: { first: rss[0], last: rss[rss.length - 1], max: Math.max(...rss) },
    rounds,
  };
}
