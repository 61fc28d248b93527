// Slot safety (issue 17, scenario 7): the PostgreSQL source never resumes a slot with a silent gap.
// A slot dropped (and re-created) or invalidated while the daemon is down, or a source behind the
// checkpoint, stops it with a named error; an idle publication still lets its slot's WAL go.
import { expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres, { type Sql } from "postgres";
import { analyticsDb, config, ROOT, startDaemon, waitFor } from "./support/harness.ts";
import { freePort, type PgCluster, sharedCluster, startCluster } from "./support/pg.ts";
import { onCleanup, tempDir } from "./support/cleanup.ts";

const dir = tempDir("cdc-sink-slots-");

async function sources(pg: PgCluster, opts: { listen?: string } = {}) {
  const ecomUrl = await pg.createDatabase("secom");
  const invUrl = await pg.createDatabase("sinv");
  const ecom = postgres(ecomUrl, { max: 2, onnotice: () => {} });
  const inv = postgres(invUrl, { max: 2, onnotice: () => {} });
  await ecom.unsafe(readFileSync(`${ROOT}sql/ecom-ddl.sql`, "utf8"));
  await inv.unsafe(readFileSync(`${ROOT}sql/inventory-ddl.sql`, "utf8"));
  const analyticsUrl = await pg.createDatabase("sanalytics");
  const analytics = await analyticsDb(analyticsUrl);
  const n = Math.random().toString(36).slice(2, 8);
  const slot = `g_ecom_${n}`;
  const toml = readFileSync(`${ROOT}sink.postgres.toml`, "utf8")
    .replace("postgres://cdc_sink@analytics-db:5432/analytics", analyticsUrl)
    .replace("postgres://cdc_sink@ecom-db:5432/ecom", `${ecomUrl}"\nslot = "${slot}`)
    .replace("postgres://cdc_sink@inventory-db:5432/inventory", `${invUrl}"\nslot = "g_inv_${n}`)
    .replace('listen = "0.0.0.0:8080"', opts.listen ? `listen = "${opts.listen}"` : "enabled = false");
  return { ecom, inv, analytics, slot, stream: `pg:${slot}`, toml, cfg: config(toml) };
}

const orderCount = async (sql: Sql, table: string) => Number((await sql.unsafe(`SELECT count(*) AS n FROM ${table}`))[0]!.n);

/** The daemon started and stopped once: the slot exists and the analytics database holds its checkpoint. */
async function synced(s: Awaited<ReturnType<typeof sources>>, rows: number) {
  await s.ecom`INSERT INTO orders (customer_id, status, total_amount) SELECT g, 'paid', g FROM generate_series(1, ${rows}) g`;
  const run = await startDaemon(s.cfg);
  await waitFor("the orders in analytics", async () => (await orderCount(s.analytics, "fact_orders")) === rows, 60_000);
  await waitFor("the source's checkpoint", async () => (await s.analytics`SELECT 1 FROM cdc_sink.checkpoints WHERE stream = ${s.stream} AND part = 'ecom'`).length === 1);
  await run.stop();
}

/** Starts the daemon on a slot with a gap: it must stop on its own, with SLOT_GAP counted. */
async function refused(s: Awaited<ReturnType<typeof sources>>) {
  const t0 = Date.now();
  const run = await startDaemon(s.cfg);
  const code = await Promise.race([run.done, new Promise<string>((r) => setTimeout(() => r("still running after 10 s"), 10_000))]);
  if (code !== 1) {
    run.daemon.stop();
    await run.done;
  }
  await run.sql.end();
  expect(code).toBe(1);
  expect(Date.now() - t0).toBeLessThan(10_000);
  return run.metrics.registry.render();
}

test("a slot dropped and re-created, or dropped, while the daemon is down is refused with SLOT_GAP, never streamed with a gap", async () => {
  const pg = await sharedCluster();
  const s = await sources(pg);
  await synced(s, 50);
  const [{ before }] = (await s.analytics`SELECT position::text AS before FROM cdc_sink.checkpoints WHERE stream = ${s.stream} AND part = 'ecom'`) as unknown as [{ before: string }];

  await s.ecom`SELECT pg_drop_replication_slot(${s.slot})`;
  await s.ecom`INSERT INTO orders (customer_id, status, total_amount) VALUES (999, 'paid', 1)`;
  await s.ecom`SELECT pg_create_logical_replication_slot(${s.slot}, 'pgoutput')`;
  await s.ecom`INSERT INTO orders (customer_id, status, total_amount) VALUES (1000, 'paid', 1)`;
  expect(await refused(s)).toContain('cdc_sink_errors_total{stage="source",code="SLOT_GAP"} 1');
  // nothing after the gap was applied, and the checkpoint did not move
  expect(await orderCount(s.analytics, "fact_orders")).toBe(50);
  expect((await s.analytics`SELECT position::text AS p FROM cdc_sink.checkpoints WHERE stream = ${s.stream} AND part = 'ecom'`)[0]!.p).toBe(before);
  // refused again on every start: the refusal is not a one-off
  expect(await refused(s)).toContain('code="SLOT_GAP"} 1');

  await s.ecom`SELECT pg_drop_replication_slot(${s.slot})`;
  expect(await refused(s)).toContain('code="SLOT_GAP"} 1');
  expect((await s.ecom`SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = ${s.slot}`)[0]!.n).toBe(0);
  expect(await orderCount(s.analytics, "fact_orders")).toBe(50);

  // the analytics database holding a checkpoint the source never reached (a source restored to an earlier point)
  await s.ecom`SELECT pg_create_logical_replication_slot(${s.slot}, 'pgoutput')`;
  await s.analytics`UPDATE cdc_sink.checkpoints SET position = position + 1000000000000 WHERE stream = ${s.stream} AND part = 'ecom'`;
  expect(await refused(s)).toContain('code="SLOT_GAP"} 1');

  // accepting the gap as the error says: streaming resumes from the slot
  await s.analytics`DELETE FROM cdc_sink.checkpoints WHERE stream = ${s.stream} AND part = 'ecom'`;
  await s.ecom`INSERT INTO orders (customer_id, status, total_amount) VALUES (1001, 'paid', 1)`;
  const run = await startDaemon(s.cfg);
  try {
    await waitFor("the order written after the accepted gap", async () => (await s.analytics`SELECT 1 FROM fact_orders WHERE customer_id = 1001`).length === 1);
    expect((await s.analytics`SELECT count(*)::int AS n FROM fact_orders WHERE customer_id IN (999, 1000)`)[0]!.n).toBe(0);
  } finally {
    await run.stop();
  }
  await Promise.all([s.ecom.end(), s.inv.end(), s.analytics.end()]);
}, 120_000);

test("max_slot_wal_keep_size exceeded while the daemon is down: it exits non-zero within 10 s, SLOT_INVALIDATED logged and counted", async () => {
  const pg = await startCluster({ settings: { max_slot_wal_keep_size: "32MB", max_replication_slots: "10" } });
  try {
    const port = await freePort();
    const s = await sources(pg, { listen: `127.0.0.1:${port}` });
    const file = join(dir, "invalidated.toml");
    writeFileSync(file, s.toml);
    await synced(s, 20);
    await s.ecom`CREATE TABLE filler (v text)`;
    for (let i = 0; i < 6; i++) {
      await s.ecom`INSERT INTO filler VALUES ('x')`;
      await s.ecom`SELECT pg_switch_wal()`;
    }
    await s.ecom`CHECKPOINT`;
    expect((await s.ecom`SELECT wal_status FROM pg_replication_slots WHERE slot_name = ${s.slot}`)[0]!.wal_status).toBe("lost");

    const t0 = Date.now();
    const p = Bun.spawn([process.execPath, `${ROOT}src/main.ts`, "--config", file], { stdout: "pipe", stderr: "pipe" });
    onCleanup(() => p.kill(9));
    const out = Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
    let scraped = "";
    const scraping = (async () => {
      while (p.exitCode === null) {
        const m = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => "");
        if (m.includes("SLOT_INVALIDATED")) scraped = m;
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const code = await Promise.race([p.exited, new Promise<string>((r) => setTimeout(() => r("still running after 10 s"), 10_000))]);
    p.kill(9);
    await scraping;
    const [stdout, stderr] = await out;
    expect(code).toBe(1);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(scraped).toContain('cdc_sink_errors_total{stage="source",code="SLOT_INVALIDATED"} 1');
    const lines = (stdout + stderr).split("\n").filter((l) => l.includes('"code":"SLOT_INVALIDATED"'));
    expect(lines.length).toBeGreaterThan(0);
    expect(lines[0]).toContain("max_slot_wal_keep_size");
    await Promise.all([s.ecom.end(), s.inv.end(), s.analytics.end()]);
  } finally {
    pg.kill();
  }
}, 120_000);

test("an idle publication's slot lets WAL go while other tables and databases write, and never confirms past the checkpoint", async () => {
  const pg = await sharedCluster();
  const s = await sources(pg);
  await synced(s, 10);
  const other = postgres(await pg.createDatabase("sother"), { max: 1, onnotice: () => {} });
  await other`CREATE TABLE filler (v text)`;
  await s.ecom`CREATE TABLE unpublished (v text)`;
  const run = await startDaemon(s.cfg);
  const violations: string[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const [slot] = await s.ecom`SELECT confirmed_flush_lsn - '0/0'::pg_lsn AS f FROM pg_replication_slots WHERE slot_name = ${s.slot}`;
      const [cp] = await s.analytics`SELECT position FROM cdc_sink.checkpoints WHERE stream = ${s.stream} AND part = 'ecom'`;
      if (slot && cp && BigInt(slot.f) > BigInt(cp.position)) violations.push(`slot confirmed ${slot.f} > checkpoint ${cp.position}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  try {
    const walAt = async () => BigInt((await s.ecom`SELECT pg_current_wal_lsn() - '0/0'::pg_lsn AS p`)[0]!.p);
    const start = await walAt();
    for (let i = 0; i < 6; i++) {
      await other`INSERT INTO filler SELECT repeat('o', 200) FROM generate_series(1, 20000)`;
      await s.ecom`INSERT INTO unpublished SELECT repeat('u', 200) FROM generate_series(1, 20000)`;
      await s.ecom`SELECT pg_switch_wal()`;
    }
    expect((await walAt()) - start).toBeGreaterThan(5n * 16n * 1024n * 1024n);
    const retained = async () => Number((await s.ecom`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) AS r FROM pg_replication_slots WHERE slot_name = ${s.slot}`)[0]!.r);
    await waitFor(
      "the idle slot to release the WAL written elsewhere",
      async () => {
        await s.ecom`CHECKPOINT`;
        return (await retained()) < 2 * 16 * 1024 * 1024;
      },
      60_000,
    );
    const [cp] = await s.analytics`SELECT position FROM cdc_sink.checkpoints WHERE stream = ${s.stream} AND part = 'ecom'`;
    expect(BigInt(cp!.position)).toBeGreaterThan(start + 4n * 16n * 1024n * 1024n);
    expect(await orderCount(s.analytics, "fact_orders")).toBe(10);
  } finally {
    sampling = false;
    await sampler;
    await run.stop();
  }
  expect(violations).toEqual([]);
  // the marker checkpoints are empty transactions: a restart resumes exactly there
  await s.ecom`INSERT INTO orders (customer_id, status, total_amount) VALUES (77, 'paid', 1)`;
  const again = await startDaemon(s.cfg);
  try {
    await waitFor("the order written after the idle stretch", async () => (await orderCount(s.analytics, "fact_orders")) === 11);
  } finally {
    await again.stop();
  }
  await Promise.all([s.ecom.end(), s.inv.end(), s.analytics.end(), other.end()]);
}, 180_000);

test("the analytics database losing acknowledged commits under a running PostgreSQL source: exit 1 with CHECKPOINT_LOST, then SLOT_GAP while the slot is past what it holds", async () => {
  const pg = await sharedCluster();
  const s = await sources(pg);
  await synced(s, 50);
  const [{ before }] = (await s.analytics`SELECT position::text AS before FROM cdc_sink.checkpoints WHERE stream = ${s.stream} AND part = 'ecom'`) as unknown as [{ before: string }];
  const run = await startDaemon(s.cfg);
  try {
    await s.ecom`INSERT INTO orders (customer_id, status, total_amount) SELECT g, 'paid', g FROM generate_series(51, 80) g`;
    await waitFor("the new orders in analytics", async () => (await orderCount(s.analytics, "fact_orders")) === 80, 60_000);
    await waitFor("the slot confirmed past the old checkpoint", async () => (await s.ecom`SELECT 1 FROM pg_replication_slots WHERE slot_name = ${s.slot} AND confirmed_flush_lsn > pg_lsn '0/0' + ${before}::numeric`).length === 1);
    // what a restore or a failover to a lagging standby leaves: the rows and the checkpoint of the last commits gone
    await s.analytics.begin(async (tx) => {
      await tx`DELETE FROM fact_orders WHERE id > 50`;
      await tx`UPDATE cdc_sink.checkpoints SET position = ${before} WHERE stream = ${s.stream} AND part = 'ecom'`;
    });
    await s.ecom`INSERT INTO orders (customer_id, status, total_amount) VALUES (81, 'paid', 81)`;
    const code = await Promise.race([run.done, new Promise<string>((r) => setTimeout(() => r("still running after 10 s"), 10_000))]);
    expect(code).toBe(1);
    expect(run.metrics.registry.render()).toContain('cdc_sink_errors_total{stage="apply",code="CHECKPOINT_LOST"} 1');
    expect(await orderCount(s.analytics, "fact_orders")).toBe(50);
  } finally {
    run.daemon.stop();
    await run.done;
    await run.sql.end();
  }
  expect(await refused(s)).toContain('code="SLOT_GAP"} 1');
}, 120_000);
