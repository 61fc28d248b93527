// The broker killed with kill -9 mid-stream and started again on the same data
// (`scripts/stack.sh restart kafka`) while Debezium streams a busy source into cdc-sink: nothing is
// lost (analytics ends equal to the source), Kafka Connect's task is RUNNING again, cdc-sink never
// exits and is ready again.
import { expect } from "bun:test";
import { ROOT, waitFor } from "../support/harness.ts";
import {
  connect,
  connectorStates,
  converge,
  createDatabase,
  dropDatabase,
  registerVariant,
  type Sink,
  sinkConfig,
  sleep,
  stackDir,
  stackEnv,
  stackTest,
  startOrderWriter,
  startSink,
  TARGET,
  uniqueName,
  type Variant,
  watchPositions,
} from "./support.ts";

stackTest("the broker killed with kill -9 and restarted mid-stream: nothing lost", async () => {
  const env = stackEnv();
  const name = uniqueName("brk");
  const srcUrl = await createDatabase(env.ECOM_DB_URL, name, ["sql/ecom-ddl.sql", "sql/sample-data.sql"]);
  const dbUrl = await createDatabase(env.ANALYTICS_DB_URL, name, ["sql/analytics-ddl.sql"]);
  const src = connect(srcUrl);
  const an = connect(dbUrl);
  const timeline: string[] = [];
  const t0 = performance.now();
  const mark = (what: string) => timeline.push(`${((performance.now() - t0) / 1000).toFixed(1)} s ${what}`);
  let variant: Variant | undefined;
  let sink: Sink | undefined;
  let writer: ReturnType<typeof startOrderWriter> | undefined;
  let watcher: ReturnType<typeof watchPositions> | undefined;
  try {
    const bookIds = (await src`SELECT id FROM books`).map((r) => Number(r.id));
    variant = await registerVariant(env, "ecom", name, name);
    const mappings = (["orders", "order_items", "books"] as const).map((t) => ({ topic: `${variant!.prefix}.public.${t}`, table: TARGET[t]! }));
    sink = await startSink(sinkConfig({ bootstrap: env.BOOTSTRAP_SERVERS, db: dbUrl, group: name, mappings }), "sink");
    await sink.ready();
    mark("cdc-sink ready");
    watcher = watchPositions(dbUrl, [{ table: "fact_orders", key: "id" }, { table: "fact_order_items", key: "id" }]);
    writer = startOrderWriter(srcUrl, { bookIds, txPerSec: 60 });
    await waitFor("the stream in analytics", async () => (await an`SELECT count(*)::int AS n FROM fact_orders`)[0]!.n > 50, 20_000);
    mark("streaming");

    const p = Bun.spawn(["bash", `${ROOT}scripts/stack.sh`, "restart", "kafka", "--dir", stackDir!], { stdout: "pipe", stderr: "pipe" });
    const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
    if (code !== 0) throw new Error(`stack.sh restart kafka failed:\n${err}`);
    mark(`broker killed and restarted (${err.trim().split("\n").at(-1)})`);
    await sleep(4000);
    const written = await writer.stop();
    writer = undefined;
    mark(`writer stopped: ${written.transactions} transactions, ${written.errors} source errors`);

    const ms = await converge(src, an, ["orders", "order_items", "books"], 90_000);
    mark(`analytics equals the source ${(ms / 1000).toFixed(1)} s after the last write`);
    const watched = await watcher.stop();
    watcher = undefined;
    expect(watched.violations).toEqual([]);
    expect(await connectorStates(env, variant.name)).toEqual(["RUNNING", "RUNNING"]);
    await sink.ready(30_000);
    expect((await an`SELECT count(*)::int AS n FROM cdc_sink.dead_letters`)[0]!.n).toBe(0);
    // cdc-sink saw the broker go away (and kept running)
    expect(await sink.metric('cdc_sink_errors_total{stage="source",code="ERR__TRANSPORT"}') + (await sink.metric('cdc_sink_errors_total{stage="source",code="ERR__ALL_BROKERS_DOWN"}'))).toBeGreaterThan(0);
  } finally {
    await writer?.stop();
    await watcher?.stop();
    const code = await sink?.term();
    await variant?.delete();
    await Promise.all([src.end(), an.end()]);
    await Promise.all([dropDatabase(srcUrl), dropDatabase(dbUrl)]);
    console.log(timeline.join("\n"));
    expect(code).toBe(0);
  }
}, 240_000);
