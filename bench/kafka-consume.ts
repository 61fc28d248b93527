// Consume throughput, memory and fetch stalls of the librdkafka addon, on the mock cluster.
// 1M messages of ~200 bytes in 64 partitions, produced once; then each consumer setting runs in a
// child process of its own (so its RSS is its own), one after another, BENCH_ROUNDS times:
// - "tuned" (big prefetch queue, columnar access, and again with a Buffer per value): the raw ceiling;
// - the daemon's consumer (its properties, consume(5000)) with fetch.queue.backoff.ms in
//   {default, 1, 10} x queued.max.messages.kbytes in {16384, 65536}: as fast as it can read, and
//   paced to each rate of BENCH_PACE (msg/s, comma-separated; 100000,300000), a consumer slower
//   than the broker like the daemon applying to PostgreSQL, whose prefetch queue fills up (where a
//   fetch back-off shows).
// A stall is a gap of BENCH_STALL_MS (250) or more between two batches that carried messages.
// BENCH_SETTINGS (a regular expression) runs only the settings whose name matches.
// Prints one line per run and a table; the last line is JSON. Stops its children and the cluster.
import { KafkaConsumer, KafkaProducer, MockCluster, librdkafkaVersion } from "../src/kafka/index.ts";

const N = Number(process.env.BENCH_MESSAGES ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const STALL_MS = Number(process.env.BENCH_STALL_MS ?? 250);
const PACES = (process.env.BENCH_PACE ?? "100000,300000").split(",").filter(Boolean).map(Number);
const ONLY = new RegExp(process.env.BENCH_SETTINGS ?? "");
const PARTITIONS = 64; // the mock caps each partition's log at 5 MiB and silently drops the oldest
const TOPIC = "bench";
const CHILD_TIMEOUT_MS = 180_000;

type Mode = "columnar" | "slices";
interface Setting {
  name: string;
  mode: Mode;
  consumeMax: number;
  /** msg/s the consumer processes at most (it sleeps after a batch when ahead) */
  pace?: number;
  properties: Record<string, string | number>;
}
interface Result {
  msgPerSec: number;
  secs: number;
  /** RSS sampled after every batch: the largest, and the process's before the consumer existed */
  rssMaxMiB: number;
  rssBaseMiB: number;
  stalls: number;
  maxGapMs: number;
}

// the daemon's consumer: src/sources/kafka.ts consumerProperties() and fetch_max_messages
const DAEMON = { "fetch.wait.max.ms": 100, "statistics.interval.ms": 5000, "client.id": "cdc-sink" };
const SETTINGS: Setting[] = [
  ...(["columnar", "slices"] as Mode[]).map((mode) => ({
    name: `tuned ${mode}`,
    mode,
    consumeMax: 100_000,
    properties: {
      "fetch.wait.max.ms": 10,
      "queued.max.messages.kbytes": 262144,
      "fetch.max.bytes": 104857600,
      "max.partition.fetch.bytes": 8388608,
      "fetch.queue.backoff.ms": 10,
    },
  })),
  ...[undefined, ...PACES].flatMap((pace) =>
    [16384, 65536].flatMap((kbytes) =>
      [undefined, 1, 10].map((backoff) => ({
        name: `daemon backoff=${backoff ?? "default"} queue=${kbytes}KiB${pace ? ` paced ${pace / 1000}k/s` : ""}`,
        mode: "columnar" as Mode,
        consumeMax: 5000,
        pace,
        properties: { ...DAEMON, "queued.max.messages.kbytes": kbytes, ...(backoff === undefined ? {} : { "fetch.queue.backoff.ms": backoff }) },
      })),
    ),
  ),
].filter((s) => ONLY.test(s.name));

/** One setting in this process: consumes all N messages in a group of its own. */
async function consumeAll(bootstrap: string, group: string, s: Setting): Promise<Result> {
  const mib = () => Math.round(process.memoryUsage().rss / 1048576);
  Bun.gc(true);
  const rssBaseMiB = mib();
  const c = new KafkaConsumer({ "bootstrap.servers": bootstrap, "group.id": group, ...s.properties });
  c.subscribe([TOPIC]);
  let got = 0;
  let bytes = 0;
  let checksum = 0; // reads every message's coordinates from JS
  let start = 0;
  let last = 0;
  let stalls = 0;
  let maxGapMs = 0;
  let rssMaxMiB = rssBaseMiB;
  const deadline = Date.now() + 120_000;
  try {
    while (got < N) {
      if (Date.now() > deadline) throw new Error(`only ${got} of ${N} messages consumed in 120 s`);
      const b = await c.consume(s.consumeMax, 100, 16 << 20);
      if (!b.count) continue;
      const now = performance.now();
      if (!start) start = now;
      else {
        const gap = now - last;
        if (gap >= STALL_MS) stalls++;
        maxGapMs = Math.max(maxGapMs, gap);
      }
      last = now;
      if (s.mode === "columnar")
        for (let i = 0; i < b.count; i++) {
          bytes += b.valueLength(i);
          checksum += b.partition(i) + b.offset(i);
        }
      else for (let i = 0; i < b.count; i++) bytes += b.value(i)!.length;
      got += b.count;
      rssMaxMiB = Math.max(rssMaxMiB, mib());
      if (s.pace) {
        const ahead = start + (got / s.pace) * 1000 - performance.now();
        if (ahead > 0) await Bun.sleep(ahead);
        last = performance.now(); // a gap counts from the end of the processing
      }
    }
  } finally {
    await c.close();
  }
  if (got !== N) throw new Error(`consumed ${got} messages, expected ${N}`);
  if (s.mode === "columnar" && checksum <= 0) throw new Error("no coordinates read");
  if (bytes !== N * 190) throw new Error(`consumed ${bytes} value bytes, expected ${N * 190}`);
  const secs = (last - start) / 1000;
  return { msgPerSec: Math.round(got / secs), secs: Math.round(secs * 100) / 100, rssMaxMiB, rssBaseMiB, stalls, maxGapMs: Math.round(maxGapMs) };
}

/** Runs one setting in a child process; kills it if it outlives CHILD_TIMEOUT_MS. */
async function inChild(bootstrap: string, group: string, s: Setting): Promise<Result> {
  const child = Bun.spawn([process.execPath, import.meta.path, "--child", JSON.stringify({ bootstrap, group, setting: s })], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, BENCH_MESSAGES: String(N) },
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), CHILD_TIMEOUT_MS);
  try {
    const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    if (code !== 0) throw new Error(`${s.name}: child exited ${code}: ${err.trim().split("\n").slice(-5).join("\n")}`);
    return JSON.parse(out.trim().split("\n").pop()!) as Result;
  } finally {
    clearTimeout(timer);
    child.kill("SIGKILL"); // no-op once it exited
  }
}

async function produce(mock: MockCluster): Promise<void> {
  const producer = new KafkaProducer({ "bootstrap.servers": mock.bootstrapServers, "linger.ms": 20, "batch.num.messages": 10000, "queue.buffering.max.messages": 1_000_000 });
  const value = Buffer.alloc(190, "x");
  const chunk = 50_000;
  const t0 = performance.now();
  try {
    for (let sent = 0; sent < N; sent += chunk) {
      const n = Math.min(chunk, N - sent);
      const keyLens = new Int32Array(n).fill(8);
      const valueLens = new Int32Array(n).fill(value.length);
      const partitions = new Int32Array(n).map((_, i) => (sent + i) % PARTITIONS);
      const keys = Buffer.alloc(8 * n);
      for (let i = 0; i < n; i++) keys.write(String(sent + i).padStart(8, "0"), i * 8);
      await producer.produceRaw(TOPIC, partitions, keys, keyLens, Buffer.concat(Array(n).fill(value)), valueLens);
    }
    const dr = await producer.flush(120_000);
    if (dr.failed.length || dr.delivered !== N) throw new Error(`produce: ${dr.delivered} delivered, ${dr.failed.length} failed`);
  } finally {
    await producer.close();
  }
  console.error(`produced ${N} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const check = new KafkaConsumer({ "bootstrap.servers": mock.bootstrapServers, "group.id": "bench-check" });
  let kept = 0;
  try {
    for (let p = 0; p < PARTITIONS; p++) {
      const w = await check.watermarks(TOPIC, p);
      kept += w.high - w.low;
    }
  } finally {
    await check.close();
  }
  if (kept !== N) throw new Error(`the mock cluster kept ${kept} of ${N} messages: use more partitions`);
}

export async function run() {
  console.error(`librdkafka ${librdkafkaVersion()}, ${N} messages of 198 bytes in ${PARTITIONS} partitions, ${ROUNDS} round(s)`);
  const mock = new MockCluster(1);
  const runs: Array<{ setting: string; round: number } & Result> = [];
  try {
    mock.createTopic(TOPIC, PARTITIONS);
    await produce(mock);
    let group = 0;
    for (let round = 1; round <= ROUNDS; round++)
      for (const s of SETTINGS) {
        const r = await inChild(mock.bootstrapServers, `bench-${group++}`, s);
        runs.push({ setting: s.name, round, ...r });
        console.error(
          `round ${round} ${s.name}: ${r.msgPerSec} msg/s (${r.secs} s), rss max ${r.rssMaxMiB} MiB (${r.rssMaxMiB - r.rssBaseMiB} above start), ` +
            `${r.stalls} stalls >= ${STALL_MS} ms, longest gap ${r.maxGapMs} ms`,
        );
      }
  } finally {
    mock.close();
  }
  // per setting: best throughput, largest RSS and gap over the rounds
  const settings = SETTINGS.map((s) => {
    const rs = runs.filter((r) => r.setting === s.name);
    return {
      setting: s.name,
      msgPerSec: Math.max(...rs.map((r) => r.msgPerSec)),
      rssMaxMiB: Math.max(...rs.map((r) => r.rssMaxMiB)),
      rssAboveStartMiB: Math.max(...rs.map((r) => r.rssMaxMiB - r.rssBaseMiB)),
      stalls: Math.max(...rs.map((r) => r.stalls)),
      maxGapMs: Math.max(...rs.map((r) => r.maxGapMs)),
    };
  });
  const row = (cells: Array<string | number>) => cells.map((c, i) => (i ? String(c).padStart(12) : String(c).padEnd(55))).join("");
  console.error(`\n${row(["setting", "msg/s", "rss max MiB", "above start", "stalls", "longest gap"])}`);
  for (const s of settings) console.error(row([s.setting, s.msgPerSec, s.rssMaxMiB, s.rssAboveStartMiB, s.stalls, `${s.maxGapMs} ms`]));
  const of = (name: string) => settings.find((s) => s.setting === name);
  return {
    bench: "kafka-consume",
    librdkafka: librdkafkaVersion(),
    messages: N,
    messageBytes: 198,
    msgPerSec: of("tuned columnar")?.msgPerSec,
    msgPerSecWithBufferSlices: of("tuned slices")?.msgPerSec,
    rssMiB: { max: Math.max(...settings.map((s) => s.rssMaxMiB)) },
    stallMs: STALL_MS,
    settings,
    runs,
  };
}

if (import.meta.main && process.argv[2] === "--child") {
  const { bootstrap, group, setting } = JSON.parse(process.argv[3]!) as { bootstrap: string; group: string; setting: Setting };
  console.log(JSON.stringify(await consumeAll(bootstrap, group, setting)));
  process.exit(0);
}
