// Faults in the dependencies: the analytics database flapping and down, a wrong password, the Kafka
// brokers down. The daemon never crashes, says why it is not ready, and is ready again within a
// second of the dependency's return; nothing is lost and nothing is dead-lettered.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { appendFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { KafkaProducer, MockCluster } from "../src/kafka/index.ts";
import { createConnection } from "node:net";
import { FaultLink } from "./chaos/proxy.ts";
import { tempDir } from "./support/cleanup.ts";
import { envelope, keyOf, newClock } from "./support/debezium.ts";
import { analyticsDb, config, ROOT, sinkToml, startDaemon, TOPICS, waitFor } from "./support/harness.ts";
import { freePort, sharedCluster, startCluster } from "./support/pg.ts";

const dir = tempDir("cdc-sink-faults-");
let mock: MockCluster;
let producer: KafkaProducer;
beforeAll(() => {
  mock = new MockCluster(1);
  producer = new KafkaProducer({ "bootstrap.servers": mock.bootstrapServers, "linger.ms": 2 });
});
afterAll(async () => {
  await producer.close();
  mock.close();
});

async function readyz(port: number): Promise<{ status: number; body: string }> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/readyz`);
    return { status: r.status, body: await r.text() };
  } catch (e) {
    return { status: 0, body: String(e) };
  }
}

test("the analytics database flapping, then down for 10 s: no crash, the cause named, ready within 1 s of each return, nothing lost", async () => {
  const pg = await startCluster();
  const url = await pg.createDatabase("flap");
  const sql = await analyticsDb(url);
  const topic = "flap.orders";
  mock.createTopic(topic, 4);
  const port = await freePort();
  const file = join(dir, "flap.toml");
  writeFileSync(file, sinkToml({ bootstrap: mock.bootstrapServers, db: url, group: "flap" }).replace(`"${TOPICS.orders}"`, `"${topic}"`).replace('listen = "127.0.0.1:0"', `listen = "127.0.0.1:${port}"`));
  const p = Bun.spawn([process.execPath, `${ROOT}src/main.ts`, "run", "--config", file], { stdout: "ignore", stderr: "pipe", env: { ...process.env, CDC_SINK_LOG_LEVEL: '"warn"' } });
  const stderr = new Response(p.stderr).text();
  const clock = newClock();
  let sent = 0;
  let producing = true;
  const writer = (async () => {
    // about 200 events/s over 500 keys
    while (producing) {
      const id = sent % 500;
      await producer.produce(topic, [{ key: keyOf(id), value: JSON.stringify(envelope(clock, "orders", sent < 500 ? "c" : "u", { after: { id, status: "paid", total_amount: sent } })) }]);
      sent++;
      await Bun.sleep(5);
    }
  })();
  const recoveries: number[] = [];
  const reasons = new Set<string>();
  try {
    await waitFor("ready", async () => (await readyz(port)).status === 200);
    for (let cycle = 0; cycle < 13; cycle++) {
      const last = cycle === 12;
      pg.stop();
      const down = Date.now();
      while (Date.now() - down < (last ? 10_000 : 2000)) {
        const r = await readyz(port);
        if (r.status === 503) reasons.add(JSON.parse(r.body).reasons.join("; ").replace(/:.*/, ""));
        await Bun.sleep(100);
      }
      expect(p.exitCode).toBeNull();
      await waitFor("the outage in the metrics", async () => (await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).includes('cdc_sink_dependency_down{dependency="analytics",cause="unreachable"} 1'), 5000);
      pg.start();
      const up = Date.now();
      while ((await readyz(port)).status !== 200 && Date.now() - up < 30_000) await Bun.sleep(20);
      recoveries.push(Date.now() - up);
      if (!last) await Bun.sleep(2500);
    }
  } finally {
    producing = false;
    await writer;
    await producer.flush(10_000);
  }
  // refused connections; an attempt that hit its connect timeout while the server was going down is named so
  expect(reasons.has("analytics database not usable (unreachable)")).toBe(true);
  expect([...reasons].filter((r) => !/^analytics database not usable \((unreachable|timeout)\)$/.test(r))).toEqual([]);
  expect({ recoveries, slow: recoveries.filter((ms) => ms > 1000) }).toEqual({ recoveries, slow: [] });
  const want = new Map<number, number>();
  for (let i = 0; i < sent; i++) want.set(i % 500, i);
  await waitFor("every event applied", async () => {
    const [r] = await sql`SELECT count(*)::int AS n, sum(total_amount)::bigint AS s FROM fact_orders`;
    return r!.n === want.size && Number(r!.s) === [...want.values()].reduce((a, b) => a + b, 0);
  });
  expect((await sql`SELECT count(*)::int AS n FROM cdc_sink.dead_letters`)[0]!.n).toBe(0);
  p.kill("SIGTERM");
  expect(await p.exited).toBe(0);
  expect(await stderr).not.toContain("TypeError");
  await sql.end();
  pg.kill();
}, 300_000);

test("a wrong password is named as an authentication failure, in /readyz and in a metric", async () => {
  const pg = await startCluster();
  const url = await pg.createDatabase("auth");
  const sql = await analyticsDb(url);
  await sql`CREATE ROLE sink LOGIN PASSWORD 'right'`;
  await sql.end();
  // this role must give its password; everyone else stays trusted
  const hba = join(pg.dataDir, "pg_hba.conf");
  appendFileSync(hba, "");
  const text = await Bun.file(hba).text();
  await Bun.write(hba, `host all sink 127.0.0.1/32 scram-sha-256\n${text}`);
  pg.stop();
  pg.start();
  const cfg = config(sinkToml({ bootstrap: mock.bootstrapServers, db: url.replace("postgres@", "sink:wrong@"), group: "auth" }));
  const run = await startDaemon(cfg);
  try {
    await waitFor("authentication named", async () => run.daemon.readiness().some((r) => r.startsWith("analytics database not usable (authentication): password authentication failed")));
    expect(run.metrics.dependencyDown.value({ dependency: "analytics", cause: "authentication" })).toBe(1);
  } finally {
    run.daemon.stop();
    expect(await run.done).toBe(0);
  }
  pg.kill();
}, 60_000);

test("the Kafka brokers down: not ready with the cause named; ready again when they return", async () => {
  const pg = await startCluster();
  const url = await pg.createDatabase("broker");
  (await analyticsDb(url)).end();
  const topic = "broker.orders";
  const own = new MockCluster(1);
  own.createTopic(topic, 2);
  const cfg = config(sinkToml({ bootstrap: own.bootstrapServers, db: url, group: "broker" }).replace(`"${TOPICS.orders}"`, `"${topic}"`));
  const run = await startDaemon(cfg);
  try {
    await waitFor("ready", async () => run.daemon.readiness().length === 0);
    own.brokerDown(1);
    await waitFor("brokers named", async () => run.daemon.readiness().some((r) => r.startsWith("kafka brokers not usable (unreachable)")), 30_000);
    expect(run.metrics.dependencyDown.value({ dependency: "kafka", cause: "unreachable" })).toBe(1);
    own.brokerUp(1);
    await waitFor("ready again", async () => run.daemon.readiness().length === 0, 30_000);
  } finally {
    await run.stop();
    own.close();
    pg.kill();
  }
}, 120_000);

test("postgres.js's array-type query failing on a new connection fails the query waiting for it (retried), never an unhandled error; the next connection fetches the types", async () => {
  const pg = await sharedCluster();
  const url = await pg.createDatabase("typefetch");
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  // deterministic stand-in for a statement_timeout of 1 ms cancelling that query: the role cannot read pg_type
  await admin.unsafe(`CREATE ROLE typefetch_${process.pid} LOGIN; REVOKE SELECT ON pg_catalog.pg_type FROM PUBLIC`);
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on("unhandledRejection", onUnhandled);
  const sql = postgres(url.replace("postgres@", `typefetch_${process.pid}@`), { max: 1, onnotice: () => {} });
  try {
    const first = await sql`SELECT 1 AS one`.then(() => undefined, (e: { code?: string }) => e.code);
    expect(first).toBe("42501");
    await new Promise((r) => setTimeout(r, 300));
    expect(unhandled).toEqual([]);
    await admin.unsafe("GRANT SELECT ON pg_catalog.pg_type TO PUBLIC");
    const [row] = await sql`SELECT '{a,b}'::text[] AS a`;
    expect(row!.a).toEqual(["a", "b"]);
  } finally {
    process.off("unhandledRejection", onUnhandled);
    await sql.end();
    await admin.end();
  }
});

test("the analytics database going back in time (restored, or failed over to a standby that lost acknowledged commits): the daemon reads again from the checkpoints it holds, nothing lost", async () => {
  const pg = await startCluster();
  const url = await pg.createDatabase("lost");
  const sql = await analyticsDb(url);
  const topic = "lost.orders";
  mock.createTopic(topic, 4);
  const cfg = config(sinkToml({ bootstrap: mock.bootstrapServers, db: url, group: "lost" }).replace(`"${TOPICS.orders}"`, `"${topic}"`));
  const run = await startDaemon(cfg);
  const clock = newClock();
  const want = new Map<number, number>();
  const send = async (ids: number[], op: "c" | "u", amount: (id: number) => number) => {
    await producer.produce(topic, ids.map((id) => ({ key: keyOf(id), value: JSON.stringify(envelope(clock, "orders", op, { after: { id, status: "paid", total_amount: amount(id) } })) })));
    for (const id of ids) want.set(id, amount(id));
    await producer.flush(10_000);
  };
  const applied = () =>
    waitFor("every event applied", async () => {
      const rows = await sql`SELECT id::int AS id, total_amount::int AS t FROM fact_orders`;
      return rows.length === want.size && rows.every((r) => want.get(r.id) === r.t);
    });
  const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
  const saved = `${pg.dataDir}.saved`;
  try {
    await send(range(0, 500), "c", (id) => id);
    await applied();
    // the database as a standby or a backup holds it: everything after this point is lost below
    pg.stop();
    execFileSync("cp", ["-a", pg.dataDir, saved]);
    pg.start();
    await send(range(0, 500), "u", (id) => 1000 + id);
    await applied();
    pg.kill();
    rmSync(pg.dataDir, { recursive: true });
    renameSync(saved, pg.dataDir);
    pg.start();
    // keys the lost updates touched get no newer event: only reading them again restores them
    await send(range(500, 100), "c", (id) => id);
    await applied();
    expect(run.metrics.errors.value({ stage: "apply", code: "CHECKPOINT_LOST" })).toBeGreaterThanOrEqual(1);
    expect((await sql`SELECT count(*)::int AS n FROM cdc_sink.dead_letters`)[0]!.n).toBe(0);
  } finally {
    await run.stop();
    // postgres.js's end() without a timeout can wait for ever on a connection made while the server restarted
    await sql.end({ timeout: 2 });
    try {
      pg.kill();
    } catch {
      /* already stopped: the test failed while it was down */
    }
    rmSync(saved, { recursive: true, force: true });
  }
}, 120_000);

test("a link that drops packets (no error, no answer) shows in readiness within 2 s: a silent Kafka broker, a silent analytics database", async () => {
  const pg = await sharedCluster();
  const url = new URL(await pg.createDatabase("silent"));
  await (await analyticsDb(url.href)).end();
  // the analytics database behind a fault proxy: a blackhole holds every byte, in both directions
  const link = new FaultLink("pg", () => createConnection({ host: "127.0.0.1", port: pg.port }));
  const proxyPort = await freePort();
  await link.listen(proxyPort);
  const topic = "silent.orders";
  const own = new MockCluster(1);
  own.createTopic(topic, 2);
  // the daemon's own fetch wait and heartbeat (the harness shortens them)
  const toml = sinkToml({ bootstrap: own.bootstrapServers, db: url.href.replace(`:${pg.port}/`, `:${proxyPort}/`), group: "silent" })
    .replace(`"${TOPICS.orders}"`, `"${topic}"`)
    .replace('"fetch.wait.max.ms" = 10', '"fetch.wait.max.ms" = 100')
    .replace('"heartbeat.interval.ms" = 500', '"heartbeat.interval.ms" = 1000');
  const cfg = config(toml);
  const run = await startDaemon(cfg);
  const notReadyAfter = async (reason: RegExp) => {
    const t0 = Date.now();
    await waitFor(`not ready: ${reason}`, async () => run.daemon.readiness().some((r) => reason.test(r)), 10_000);
    return Date.now() - t0;
  };
  try {
    await waitFor("ready", async () => run.daemon.readiness().length === 0);
    // no false alarm: a broker answering in 30 ms, an idle pipeline (only heartbeats on the coordinator's connection)
    own.brokerRtt(1, 30);
    const blips: string[] = [];
    for (const end = Date.now() + 8000; Date.now() < end; await Bun.sleep(50)) blips.push(...run.daemon.readiness());
    expect(blips).toEqual([]);
    own.brokerRtt(1, 10_000);
    expect(await notReadyAfter(/^kafka brokers not answering: .*nothing received for/)).toBeLessThan(2000);
    own.brokerRtt(1, 0);
    await waitFor("ready again", async () => run.daemon.readiness().length === 0, 30_000);
    link.set({ fault: "blackhole" });
    expect(await notReadyAfter(/^analytics database not usable \(timeout\)/)).toBeLessThan(2000);
    link.set({ fault: "none" });
    await waitFor("ready again", async () => run.daemon.readiness().length === 0, 30_000);
  } finally {
    await run.stop();
    link.close();
    own.close();
  }
}, 120_000);
