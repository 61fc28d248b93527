// The daemon as a process: bad config, kill -9 under load, PostgreSQL outage, SIGTERM.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { KafkaProducer, MockCluster } from "../src/kafka/index.ts";
import { envelope, keyOf, newClock, type SourceClock } from "./support/debezium.ts";
import { analyticsDb, ROOT, sinkToml, TOPICS, waitFor } from "./support/harness.ts";
import { sharedCluster, startCluster } from "./support/pg.ts";
import { tempDir } from "./support/cleanup.ts";

const BUN = process.execPath;
const dir = tempDir("cdc-sink-daemon-");
let mock: MockCluster;
let producer: KafkaProducer;

beforeAll(() => {
  mock = new MockCluster(1);
  for (const t of Object.values(TOPICS)) mock.createTopic(t, 4);
  producer = new KafkaProducer({ "bootstrap.servers": mock.bootstrapServers, "linger.ms": 2 });
});
afterAll(async () => {
  await producer.close();
  mock.close();
});

function writeConfig(name: string, toml: string): string {
  const f = join(dir, `${name}.toml`);
  writeFileSync(f, toml);
  return f;
}

function spawnSink(args: string[], output: "pipe" | "ignore" = "ignore") {
  return Bun.spawn([BUN, `${ROOT}src/main.ts`, ...args], { stdout: output, stderr: output, env: { ...process.env, CDC_SINK_LOG_LEVEL: '"warn"' } });
}

/** Orders events over `keys` keys: creates, updates, deletes with tombstones; returns the expected final state. */
function orderEvents(clock: SourceClock, n: number, keys: number, state: Map<number, number>, from = 0) {
  const msgs: Array<{ key: string; value: string | null }> = [];
  for (let i = from; i < from + n; i++) {
    const id = (i * 7919) % keys;
    const exists = state.has(id);
    if (exists && i % 10 === 0) {
      msgs.push({ key: keyOf(id), value: JSON.stringify(envelope(clock, "orders", "d", { before: { id } })) }, { key: keyOf(id), value: null });
      state.delete(id);
    } else {
      msgs.push({ key: keyOf(id), value: JSON.stringify(envelope(clock, "orders", exists ? "u" : "c", { after: { id, status: "paid", total_amount: i, customer_id: 1 } })) });
      state.set(id, i);
    }
  }
  return msgs;
}

async function expectState(sql: postgres.Sql, state: Map<number, number>, timeoutMs = 60_000) {
  const want = JSON.stringify([...state.entries()].sort((a, b) => a[0] - b[0]));
  let got = "";
  await waitFor(
    "analytics state to equal the event-derived state",
    async () => {
      const r = await sql`SELECT id::int, total_amount::int AS t FROM fact_orders ORDER BY id`;
      got = JSON.stringify(r.map((x) => [x.id, x.t]));
      return got === want;
    },
    timeoutMs,
  ).catch((e) => {
    throw new Error(`${(e as Error).message}\nwant ${want.slice(0, 300)}\ngot  ${got.slice(0, 300)}`);
  });
}

test("a bad config exits 78 naming the key, for validate and for run", async () => {
  const f = writeConfig("bad", sinkToml({ bootstrap: "127.0.0.1:1", db: "postgres://x@127.0.0.1:1/x", group: "g" }).replace('table = "fact_orders"', 'table = "fact_orders"\ndelete_mode = "never"'));
  for (const cmd of ["validate", "run"]) {
    const p = spawnSink([cmd, "--config", f], "pipe");
    expect(await p.exited).toBe(78);
    const err = await new Response(p.stderr).text();
    expect(err).toContain("mappings[0].delete_mode (line");
  }
  const ok = spawnSink(["validate", "--config", writeConfig("good", sinkToml({ bootstrap: "127.0.0.1:1", db: "postgres://x@127.0.0.1:1/x", group: "g" }))]);
  expect(await ok.exited).toBe(0);
  const usage = spawnSink(["frobnicate"]);
  expect(await usage.exited).toBe(64);
}, 60_000);

test("kill -9 at random points under load, then restart: nothing lost, nothing doubled", async () => {
  const pg = await sharedCluster();
  const url = await pg.createDatabase("kill");
  const sql = await analyticsDb(url);
  const cfg = writeConfig("kill", sinkToml({ bootstrap: mock.bootstrapServers, db: url, group: "kill", extra: "[batch]\nmax_events = 500\nmax_latency_ms = 20" }));
  const clock = newClock();
  const state = new Map<number, number>();
  let produced = 0;
  let messages = 0;
  let stopLoad = false;
  const load = (async () => {
    while (!stopLoad) {
      const msgs = orderEvents(clock, 400, 500, state, produced);
      produced += 400;
      messages += msgs.length;
      await producer.produce(TOPICS.orders, msgs);
      await producer.flush(10_000);
      await new Promise((r) => setTimeout(r, 30));
    }
  })();
  for (let round = 0; round < 4; round++) {
    const p = spawnSink(["run", "--config", cfg]);
    await waitFor("some progress", async () => (await sql`SELECT count(*)::int AS n FROM cdc_sink.checkpoints`)[0]!.n > 0, 30_000);
    await new Promise((r) => setTimeout(r, 500 + Math.random() * 2500));
    p.kill(9);
    expect(await p.exited).not.toBe(0);
  }
  stopLoad = true;
  await load;
  const final = spawnSink(["run", "--config", cfg]);
  try {
    await expectState(sql, state);
    // every message consumed exactly up to the end of each partition
    await waitFor("checkpoints at the end", async () => (await sql`SELECT coalesce(sum(position), 0)::int AS n FROM cdc_sink.checkpoints WHERE stream = 'kafka:kill'`)[0]!.n === messages);
  } finally {
    final.kill("SIGTERM");
    expect(await final.exited).toBe(0);
  }
  expect((await sql`SELECT count(*)::int AS n FROM cdc_sink.dead_letters`)[0]!.n).toBe(0);
  await sql.end();
}, 240_000);

test("PostgreSQL stopped for 10 s mid-stream: the sink retries, catches up, loses nothing", async () => {
  const pg = await startCluster();
  const url = await pg.createDatabase("outage");
  const sql = await analyticsDb(url);
  const topic = "outage.orders";
  mock.createTopic(topic, 2);
  const cfg = writeConfig("outage", sinkToml({ bootstrap: mock.bootstrapServers, db: url, group: "outage" }).replace(`"${TOPICS.orders}"`, `"${topic}"`));
  const clock = newClock();
  const state = new Map<number, number>();
  const p = spawnSink(["run", "--config", cfg]);
  try {
    await producer.produce(topic, orderEvents(clock, 300, 100, state, 0));
    await producer.flush();
    await expectState(sql, state);
    await sql.end();
    pg.stop();
    await producer.produce(topic, orderEvents(clock, 300, 100, state, 300));
    await producer.flush();
    await new Promise((r) => setTimeout(r, 10_000));
    expect(p.exitCode).toBeNull();
    pg.start();
    const sql2 = postgres(url, { max: 1, onnotice: () => {} });
    await expectState(sql2, state);
    await sql2.end();
  } finally {
    p.kill("SIGTERM");
    expect(await p.exited).toBe(0);
    pg.kill();
  }
}, 180_000);

test("check reaches the brokers and the analytics database, and names what is missing", async () => {
  const pg = await sharedCluster();
  const url = await pg.createDatabase("check");
  const sql = await analyticsDb(url);
  const good = writeConfig("check-good", sinkToml({ bootstrap: mock.bootstrapServers, db: url, group: "check" }));
  const ok = spawnSink(["check", "--config", good], "pipe");
  expect(await ok.exited).toBe(0);
  const okOut = await new Response(ok.stdout).text();
  expect(okOut).toContain(`ok   topic ${TOPICS.orders}`);
  expect(okOut).toContain("ok   table fact_inventory (key book_id;");
  // the decoding contract, per column
  expect(okOut).toContain("info fact_orders.total_amount numeric(12,2) <- a base64 unscaled integer, scale 2");
  await sql`DROP TABLE fact_order_items CASCADE`;
  await sql.end();
  const bad = writeConfig("check-bad", sinkToml({ bootstrap: mock.bootstrapServers, db: url, group: "check" }).replace(`"${TOPICS.books}"`, '"no.such.topic"'));
  const p = spawnSink(["check", "--config", bad], "pipe");
  expect(await p.exited).toBe(1);
  const out = await new Response(p.stdout).text();
  expect(out).toContain("FAIL topic no.such.topic does not exist");
  expect(out).toContain("FAIL table fact_order_items does not exist in the analytics database");
}, 60_000);
