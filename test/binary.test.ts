// The single binary: built with bun build --compile, run from a directory holding a stray .env
// and bunfig.toml, against the mock cluster and PostgreSQL.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KafkaProducer, MockCluster } from "../src/kafka/native.ts";
import { envelope, keyOf, newClock } from "./support/debezium.ts";
import { analyticsDb, ROOT, sinkToml, TOPICS, waitFor } from "./support/harness.ts";
import { freePort, sharedCluster } from "./support/pg.ts";

const dir = mkdtempSync(join(tmpdir(), "cdc-sink-bin-"));
const mock = new MockCluster(1);
afterAll(() => mock.close());

test("the compiled binary serves /readyz, applies and counts an event, and exits 0 on SIGTERM", async () => {
  const bin = join(dir, "cdc-sink");
  const build = Bun.spawnSync([process.execPath, "build", "--compile", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig", `${ROOT}src/main.ts`, "--outfile", bin], { stderr: "pipe" });
  expect(build.exitCode).toBe(0);
  const version = Bun.spawnSync([bin, "--version"], { cwd: dir });
  expect(version.stdout.toString()).toMatch(/^cdc-sink \d+\.\d+\.\d+ \(librdkafka \d/);
  for (const cmd of ["run", "validate", "check"]) expect(Bun.spawnSync([bin, cmd, "--help"]).stdout.toString()).toContain(`Usage: cdc-sink ${cmd}`);

  const pg = await sharedCluster();
  const url = await pg.createDatabase("bin");
  const sql = await analyticsDb(url);
  for (const t of Object.values(TOPICS)) mock.createTopic(t, 1);
  const port = await freePort();
  writeFileSync(join(dir, "sink.toml"), sinkToml({ bootstrap: mock.bootstrapServers, db: url, group: "bin" }).replace("127.0.0.1:0", `127.0.0.1:${port}`));
  // would break the run if the binary read them
  writeFileSync(join(dir, ".env"), "CDC_SINK_POSTGRES_URL=postgres://nobody@127.0.0.1:1/none\n");
  writeFileSync(join(dir, "bunfig.toml"), 'preload = ["./does-not-exist.ts"]\n');
  const p = Bun.spawn([bin, "--config", "sink.toml"], { cwd: dir, stdout: "ignore", stderr: "pipe", env: { PATH: process.env.PATH ?? "" } });
  try {
    await waitFor("/readyz", async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, 30_000);
    const producer = new KafkaProducer({ "bootstrap.servers": mock.bootstrapServers });
    await producer.produce(TOPICS.orders, [{ key: keyOf(42), value: JSON.stringify(envelope(newClock(), "orders", "c", { after: { id: 42, status: "paid", total_amount: 4.2 } })) }]);
    await producer.flush();
    await producer.close();
    await waitFor("the row", async () => (await sql`SELECT total_amount::text AS t FROM fact_orders WHERE id = 42`)[0]?.t === "4.20");
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toContain(`cdc_sink_events_consumed_total{topic="${TOPICS.orders}"} 1`);
    expect(metrics).toContain('cdc_sink_rows_applied_total{table="fact_orders",op="upsert"} 1');
  } finally {
    p.kill("SIGTERM");
  }
  expect(await p.exited).toBe(0);
  expect(await new Response(p.stderr).text()).toContain('"msg":"stopped cleanly"');
  await sql.end();
}, 120_000);
