// Initial load: the daemon (default settings, built-in snapshot) copying a 1M-row `orders` table of
// the source into an empty analytics table, against the database's own COPY-to-COPY pipe
// (`psql COPY … TO STDOUT | psql COPY … FROM STDIN`) of the same rows and columns, into a fresh
// analytics database each, in the same run, alternating. Prints both, the ratio, and the daemon's
// peak RSS.
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { tempDir } from "../test/support/cleanup.ts";
import { analyticsDb, ROOT } from "../test/support/harness.ts";
import { pgBinDir, startCluster } from "../test/support/pg.ts";

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const COLS = "id, customer_id, status, total_amount, currency, created_at, updated_at";

function sh(cmd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn("bash", ["-o", "pipefail", "-c", cmd], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    p.stderr.on("data", (d) => (err += d));
    p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${cmd}: exit ${code}: ${err}`))));
  });
}

/** The daemon as a user runs it; resolves at its "snapshot complete" log line, with its peak RSS. */
async function daemonLoad(dir: string, name: string, sourceUrl: string, analyticsUrl: string): Promise<{ secs: number; copySecs: number; rssMiB: number }> {
  const file = join(dir, `${name}.toml`);
  writeFileSync(
    file,
    `[source]
kind = "postgres"
[postgres]
url = "${analyticsUrl}"
[http]
listen = "127.0.0.1:0"
[[postgres_sources]]
name = "ecom"
url = "${sourceUrl}"
slot = "${name}"
publication = "${name}"
[[mappings]]
source = "ecom"
source_table = "public.orders"
table = "fact_orders"
`,
  );
  const t0 = performance.now();
  const proc = Bun.spawn([process.execPath, `${ROOT}src/main.ts`, "run", "--config", file], { stdout: "ignore", stderr: "pipe" });
  let secs = 0;
  let copySecs = 0;
  let tail = "";
  try {
    const reader = proc.stderr.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the daemon exited (${await proc.exited}) before the snapshot completed: ${tail}`);
      buf += dec.decode(value, { stream: true });
      const lines = buf.split("\n");
      buf = lines.pop()!;
      for (const l of lines) {
        tail = l;
        if (l.includes('"snapshot copied"')) copySecs = Math.max(copySecs, JSON.parse(l).seconds);
        if (l.includes('"snapshot complete"')) secs = (performance.now() - t0) / 1000;
      }
      if (secs) break;
    }
    const rssMiB = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"))![1]) / 1024;
    return { secs, copySecs, rssMiB };
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
  }
}

export async function run() {
  const pg = await startCluster();
  const dir = tempDir("cdc-sink-bench-snapshot-");
  try {
    const sourceUrl = await pg.createDatabase("ecom");
    const ecom = postgres(sourceUrl, { max: 1, onnotice: () => {} });
    await ecom.unsafe(readFileSync(`${ROOT}sql/ecom-ddl.sql`, "utf8"));
    await ecom.unsafe(`INSERT INTO orders (customer_id, status, total_amount, currency, created_at, updated_at)
      SELECT 1 + g % 50000, (ARRAY['pending','paid','shipped','delivered','cancelled'])[1 + g % 5], (g % 100000) / 100.0, 'EUR',
             timestamptz '2026-01-01' + g * interval '7 seconds', timestamptz '2026-01-01' + g * interval '9 seconds'
      FROM generate_series(1, ${ROWS}) g`);
    await ecom.unsafe("VACUUM ANALYZE orders");
    const [{ size }] = (await ecom`SELECT pg_size_pretty(pg_total_relation_size('orders')) AS size`) as unknown as [{ size: string }];
    await ecom.end();
    console.error(`source: ${ROWS} orders (${size}); PostgreSQL ${pg.port}, the daemon with its default settings`);

    const psql = join(pgBinDir(), "psql");
    const runs: Array<{ round: number; pipeSecs: number; daemonSecs: number; daemonCopySecs: number; daemonRssMiB: number }> = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const pipeUrl = await pg.createDatabase(`pipe${round}`);
      (await analyticsDb(pipeUrl)).end();
      // the same columns the daemon writes: the row, its position (0, 0 for a snapshot) and sync time
      const t0 = performance.now();
      await sh(
        `${psql} -X -q "${sourceUrl}" -c "COPY (SELECT ${COLS}, 0, 0, now() FROM orders) TO STDOUT" | ${psql} -X -q "${pipeUrl}" -c "COPY fact_orders (${COLS}, _cdc_commit_lsn, _cdc_lsn, _cdc_synced_at) FROM STDIN"`,
      );
      const pipeSecs = (performance.now() - t0) / 1000;

      const daemonUrl = await pg.createDatabase(`daemon${round}`);
      const analytics = await analyticsDb(daemonUrl);
      const d = await daemonLoad(dir, `bench_snapshot_${round}`, sourceUrl, daemonUrl);
      const [{ n }] = (await analytics`SELECT count(*)::int AS n FROM fact_orders`) as unknown as [{ n: number }];
      await analytics.end();
      if (n !== ROWS) throw new Error(`the daemon's snapshot holds ${n} rows, not ${ROWS}`);
      runs.push({ round, pipeSecs, daemonSecs: d.secs, daemonCopySecs: d.copySecs, daemonRssMiB: Math.round(d.rssMiB) });
      console.error(
        `round ${round}: COPY pipe ${pipeSecs.toFixed(2)} s (${Math.round(ROWS / pipeSecs)} rows/s); daemon ${d.secs.toFixed(2)} s from start (${Math.round(ROWS / d.secs)} rows/s; its copy ${d.copySecs.toFixed(2)} s), ratio ${(pipeSecs / d.secs).toFixed(2)}, peak RSS ${Math.round(d.rssMiB)} MiB`,
      );
      const admin = postgres(pg.url("postgres"), { max: 1, onnotice: () => {} });
      await admin.unsafe(`SELECT pg_drop_replication_slot('bench_snapshot_${round}')`);
      await admin.end();
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const pipe = median(runs.map((r) => r.pipeSecs));
    const daemon = median(runs.map((r) => r.daemonSecs));
    console.error(`median: COPY pipe ${pipe.toFixed(2)} s, daemon ${daemon.toFixed(2)} s: the daemon loads at ${(pipe / daemon).toFixed(2)}x the pipe`);
    return { bench: "pg-snapshot", rows: ROWS, pipeSecs: pipe, daemonSecs: daemon, ratio: Number((pipe / daemon).toFixed(3)), runs };
  } finally {
    pg.kill();
  }
}
