// The single binary: built with bun build --compile, run from a directory holding a stray .env
// and bunfig.toml, against the mock cluster and PostgreSQL.
import { afterAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { KafkaProducer, MockCluster } from "../src/kafka/index.ts";
import { envelope, keyOf, newClock } from "./support/debezium.ts";
import { analyticsDb, ROOT, sinkToml, TOPICS, waitFor } from "./support/harness.ts";
import { freePort, sharedCluster } from "./support/pg.ts";
import { tempDir } from "./support/cleanup.ts";

const dir = tempDir("cdc-sink-bin-");
const mock = new MockCluster(1);
afterAll(() => mock.close());

/** Runs `cmd --config sink.toml` in `cwd`: /readyz, one event applied and counted, exit 0 on SIGTERM. */
async function servesAppliesAndStops(cmd: string[], cwd: string, group: string) {
  const pg = await sharedCluster();
  const url = await pg.createDatabase(group);
  const sql = await analyticsDb(url);
  const topics = Object.fromEntries(Object.entries(TOPICS).map(([k, t]) => [k, `${t}.${group}`])) as typeof TOPICS;
  for (const t of Object.values(topics)) mock.createTopic(t, 1);
  const port = await freePort();
  let toml = sinkToml({ bootstrap: mock.bootstrapServers, db: url, group }).replace("127.0.0.1:0", `127.0.0.1:${port}`);
  for (const [k, t] of Object.entries(TOPICS)) toml = toml.replace(`"${t}"`, `"${topics[k as keyof typeof TOPICS]}"`);
  writeFileSync(join(cwd, "sink.toml"), toml);
  const p = Bun.spawn([...cmd, "--config", "sink.toml"], { cwd, stdout: "ignore", stderr: "pipe", env: { PATH: process.env.PATH ?? "" } });
  try {
    await waitFor("/readyz", async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, 30_000);
    const producer = new KafkaProducer({ "bootstrap.servers": mock.bootstrapServers });
    await producer.produce(topics.orders, [{ key: keyOf(42), value: JSON.stringify(envelope(newClock(), "orders", "c", { after: { id: 42, status: "paid", total_amount: 4.2 } })) }]);
    await producer.flush();
    await producer.close();
    await waitFor("the row", async () => (await sql`SELECT total_amount::text AS t FROM fact_orders WHERE id = 42`)[0]?.t === "4.20");
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toContain(`cdc_sink_events_consumed_total{topic="${topics.orders}"} 1`);
    expect(metrics).toContain('cdc_sink_rows_applied_total{table="fact_orders",op="upsert"} 1');
  } finally {
    p.kill("SIGTERM");
  }
  expect(await p.exited).toBe(0);
  expect(await new Response(p.stderr).text()).toContain('"msg":"stopped cleanly"');
  await sql.end();
}

test("the compiled binary serves /readyz, applies and counts an event, and exits 0 on SIGTERM", async () => {
  const bin = join(dir, "cdc-sink");
  const build = Bun.spawnSync([process.execPath, "build", "--compile", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig", `${ROOT}src/main.ts`, "--outfile", bin], { stderr: "pipe" });
  expect(build.exitCode).toBe(0);
  const version = Bun.spawnSync([bin, "--version"], { cwd: dir });
  expect(version.stdout.toString()).toMatch(/^cdc-sink \d+\.\d+\.\d+\nlibrdkafka 2\.15\.\d+ \(.*sasl_scram.*zstd/);
  for (const cmd of ["run", "validate", "check"]) expect(Bun.spawnSync([bin, cmd, "--help"]).stdout.toString()).toContain(`Usage: cdc-sink ${cmd}`);
  // would break the run if the binary read them
  writeFileSync(join(dir, ".env"), "CDC_SINK_POSTGRES_URL=postgres://nobody@127.0.0.1:1/none\n");
  writeFileSync(join(dir, "bunfig.toml"), 'preload = ["./does-not-exist.ts"]\n');
  await servesAppliesAndStops([bin], dir, "bin");
}, 120_000);

test("bundled for Node, the daemon runs the same under node", async () => {
  const out = tempDir("cdc-sink-node-");
  const build = Bun.spawnSync([process.execPath, "build", `${ROOT}src/main.ts`, "--target=node", "--outdir", out], { stderr: "pipe" });
  expect(build.exitCode).toBe(0);
  const node = Bun.which("node");
  expect(node).toBeTruthy();
  expect(Bun.spawnSync([node!, join(out, "main.js"), "--version"]).stdout.toString()).toMatch(/^cdc-sink \d+\.\d+\.\d+\nlibrdkafka 2\.15\.\d+ \(.*sasl_scram.*zstd/);
  await servesAppliesAndStops([node!, join(out, "main.js")], out, "node");
}, 120_000);

test("from source under Deno, the daemon runs the same", async () => {
  const deno = `${ROOT}node_modules/.bin/deno`;
  expect(Bun.spawnSync([deno, "run", "-A", `${ROOT}src/main.ts`, "--version"]).stdout.toString()).toMatch(/^cdc-sink \d+\.\d+\.\d+\nlibrdkafka 2\.15\.\d+ \(.*sasl_scram.*zstd/);
  await servesAppliesAndStops([deno, "run", "-A", `${ROOT}src/main.ts`], tempDir("cdc-sink-deno-"), "deno");
}, 120_000);
