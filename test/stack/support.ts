// The real-stack tier's helpers: the stack scripts/stack.sh started (its env file, named by
// STACK_DIR), Debezium connectors registered through scripts/register-connectors.sh (the shipped
// JSONs, or a variant of one with --set overrides), databases of their own per test, cdc-sink as a
// process of its own (`bun src/main.ts run`), a writer changing a source database while the test
// runs, and comparisons of source and analytics tables. Everything started here is stopped by the
// test that started it, and, should it fail or be interrupted, by test/support/cleanup.ts.
import { test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres, { type Sql } from "postgres";
import { onCleanup, tempDir } from "../support/cleanup.ts";
import { ROOT, waitFor } from "../support/harness.ts";
import { freePort } from "../support/pg.ts";

export const stackDir = process.env.STACK_DIR;
/** A test that runs only against a running stack (scripts/test.sh starts one for this tier). */
export const stackTest = stackDir && existsSync(`${stackDir}/env`) ? test : test.skip;

export interface StackEnv {
  STACK_DIR: string;
  BOOTSTRAP_SERVERS: string;
  CONNECT_URL: string;
  ECOM_DB_URL: string;
  INVENTORY_DB_URL: string;
  ANALYTICS_DB_URL: string;
  CONNECT_DB_HOSTS: string;
  CONNECT_SECRETS_DIR: string;
}
export function stackEnv(): StackEnv {
  const env: Record<string, string> = {};
  for (const l of readFileSync(`${stackDir}/env`, "utf8").split("\n")) {
    const m = /^export ([A-Z_]+)='(.*)'$/.exec(l);
    if (m) env[m[1]!] = m[2]!;
  }
  return env as unknown as StackEnv;
}

let seq = 0;
/** A name no other test (or run on this stack) uses: lower case, digits and underscores. */
export const uniqueName = (prefix: string) => `${prefix}_${process.pid}_${Date.now().toString(36)}_${++seq}`;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pg = (url: string, max = 2) => postgres(url, { max, onnotice: () => {}, idle_timeout: 5 });
const withDb = (url: string, db: string) => url.replace(/\/[^/]*$/, `/${db}`);

/** A fresh database on the cluster of `clusterUrl`, loaded with `files` (paths below the repository). */
export async function createDatabase(clusterUrl: string, name: string, files: string[] = []): Promise<string> {
  const admin = pg(withDb(clusterUrl, "postgres"), 1);
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = withDb(clusterUrl, name);
  if (files.length) {
    const sql = pg(url, 1);
    try {
      for (const f of files) await sql.unsafe(readFileSync(join(ROOT, f), "utf8"));
    } finally {
      await sql.end();
    }
  }
  return url;
}

/** Drops a database (its inactive replication slots first); best effort, for tidiness. */
export async function dropDatabase(url: string): Promise<void> {
  const name = url.replace(/^.*\//, "");
  const admin = pg(withDb(url, "postgres"), 1);
  try {
    await waitFor(
      `the slots of ${name} to be released`,
      async () => (await admin`SELECT count(*)::int AS n FROM pg_replication_slots WHERE database = ${name} AND active`)[0]!.n === 0,
      15_000,
    ).catch(() => undefined);
    await admin`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = ${name} AND NOT active`.catch(() => undefined);
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
  } finally {
    await admin.end();
  }
}

// --- connectors ---------------------------------------------------------------------------------

export interface Registered {
  out: string;
  err: string;
  ms: number;
}

/** scripts/register-connectors.sh with the stack's overrides; throws unless it exits 0. */
export async function registerConnectors(env: StackEnv, args: string[] = []): Promise<Registered> {
  const t = performance.now();
  const p = Bun.spawn(["bash", `${ROOT}scripts/register-connectors.sh`, "--timeout", "90", ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  if (code !== 0) throw new Error(`register-connectors ${args.join(" ")} exited ${code}:\n${out}\n${err}`);
  return { out, err, ms: performance.now() - t };
}

export interface Variant {
  name: string;
  /** topic prefix = connector name */
  prefix: string;
  slot: string;
  delete(): Promise<void>;
}

/**
 * A variant of a shipped connector (connectors/<base>-connector.json, sent as it is plus `--set`
 * overrides): its own name, topic prefix, slot and publication, reading database `db`.
 */
export async function registerVariant(env: StackEnv, base: "ecom" | "inventory", name: string, db: string, sets: Record<string, string> = {}): Promise<Variant & Registered> {
  const shipped = JSON.parse(readFileSync(`${ROOT}connectors/${base}-connector.json`, "utf8")) as { config: Record<string, string> };
  const file = join(tempDir("cdc-sink-connector-"), `${name}.json`);
  writeFileSync(file, JSON.stringify({ name, config: shipped.config }));
  const all = { "database.dbname": db, "topic.prefix": name, "slot.name": name, "publication.name": name, ...sets };
  const variant: Variant = {
    name,
    prefix: name,
    slot: all["slot.name"],
    async delete() {
      await fetch(`${env.CONNECT_URL}/connectors/${name}`, { method: "DELETE" }).catch(() => undefined);
    },
  };
  onCleanup(() => {
    Bun.spawnSync(["curl", "-s", "-m", "5", "-X", "DELETE", `${env.CONNECT_URL}/connectors/${name}`], { stdout: "ignore", stderr: "ignore" });
  });
  const r = await registerConnectors(env, [file, ...Object.entries(all).flatMap(([k, v]) => ["--set", `${k}=${v}`])]);
  if (!r.out.includes(`${name} RUNNING`)) throw new Error(`${name} is not RUNNING:\n${r.out}\n${r.err}`);
  return { ...variant, ...r };
}

export async function connectorStates(env: StackEnv, name: string): Promise<string[]> {
  const s = (await (await fetch(`${env.CONNECT_URL}/connectors/${name}/status`)).json()) as { connector: { state: string }; tasks: Array<{ state: string }> };
  return [s.connector.state, ...s.tasks.map((t) => t.state)];
}

// --- topics -------------------------------------------------------------------------------------

export interface TopicRecord {
  partition: number;
  offset: number;
  key: string | null;
  value: string | null;
}

/** Every record of `topics` so far, per topic in partition/offset order (a consumer group of its own). */
export async function readTopics(bootstrap: string, topics: string[], idleMs = 1500): Promise<Map<string, TopicRecord[]>> {
  const { KafkaConsumer } = await import("../../src/kafka/index.ts");
  const c = new KafkaConsumer({ "bootstrap.servers": bootstrap, "group.id": uniqueName("read"), "fetch.wait.max.ms": 10 });
  const got = new Map<string, TopicRecord[]>(topics.map((t) => [t, []]));
  try {
    c.subscribe(topics);
    let last = Date.now();
    let assigned = false;
    const end = Date.now() + 30_000;
    while (Date.now() < end && (!assigned || Date.now() - last < idleMs)) {
      const b = await c.consume(5000, 100);
      if (b.rebalances.length) {
        assigned = c.assignment().length > 0;
        last = Date.now();
      }
      for (let i = 0; i < b.count; i++) {
        got.get(b.topic(i))?.push({ partition: b.partition(i), offset: b.offset(i), key: b.keyText(i), value: b.valueText(i) });
        last = Date.now();
      }
    }
  } finally {
    await c.close();
  }
  for (const l of got.values()) l.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  return got;
}

// --- cdc-sink processes -------------------------------------------------------------------------

export interface MappingSpec {
  topic: string;
  table: string;
  extra?: string;
}

/** A Kafka-mode config for the stack's broker: the modes the shipped connectors use, short session timeouts. */
export function sinkConfig(o: { bootstrap: string; db: string; group: string; mappings: MappingSpec[]; properties?: Record<string, string | number | undefined>; extra?: string }): string {
  const props = { "fetch.wait.max.ms": 10, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, ...o.properties };
  return [
    `[kafka]`,
    `bootstrap_servers = ${JSON.stringify(o.bootstrap)}`,
    `group_id = ${JSON.stringify(o.group)}`,
    `[kafka.properties]`,
    ...Object.entries(props).filter(([, v]) => v !== undefined).map(([k, v]) => `${JSON.stringify(k)} = ${JSON.stringify(v)}`),
    `[debezium]`,
    `"decimal.handling.mode" = "double"`,
    `[postgres]`,
    `url = ${JSON.stringify(o.db)}`,
    `[retry]`,
    `initial_ms = 100`,
    `max_ms = 2000`,
    o.extra ?? "",
    ...o.mappings.flatMap((m) => [`[[mappings]]`, `topic = ${JSON.stringify(m.topic)}`, `table = ${JSON.stringify(m.table)}`, m.extra ?? ""]),
  ].join("\n");
}

/** sink.toml as shipped, pointed at the stack (what scripts/demo.sh --kafka runs). */
export function shippedSinkConfig(env: StackEnv, group: string): string {
  const out: string[] = [];
  let section = "";
  for (const l of readFileSync(`${ROOT}sink.toml`, "utf8").split("\n")) {
    const h = /^\s*\[([^\][]+)\]\s*(#.*)?$/.exec(l);
    if (h) {
      section = h[1]!.trim();
      out.push(l);
      if (section === "postgres") out.push(`url = ${JSON.stringify(env.ANALYTICS_DB_URL)}`);
      continue;
    }
    const k = /^\s*([A-Za-z_]+)\s*=/.exec(l)?.[1];
    if (section === "kafka" && k === "bootstrap_servers") out.push(`bootstrap_servers = ${JSON.stringify(env.BOOTSTRAP_SERVERS)}`);
    else if (section === "kafka" && k === "group_id") out.push(`group_id = ${JSON.stringify(group)}`);
    else if (section === "postgres" && k && ["host", "port", "database", "user", "password", "password_file", "url"].includes(k)) continue;
    else out.push(l);
  }
  return out.join("\n");
}

export interface Sink {
  label: string;
  pid: number;
  port: number;
  logFile: string;
  exited: Promise<number>;
  /** resolves when /readyz answers 200; throws with the log's tail if the process exits or 60 s pass */
  ready(timeoutMs?: number): Promise<void>;
  /** SIGTERM, then the exit code (a clean stop is 0) */
  term(): Promise<number>;
  /** SIGKILL, then waits until the process is gone */
  kill9(): Promise<void>;
  metrics(): Promise<string>;
  /** the value of one metric line (`name{labels}`), 0 when absent */
  metric(series: string): Promise<number>;
  log(lines?: number): string;
}

/** cdc-sink as a process of its own: `bun src/main.ts run --config <toml>` with [http] on a free port. */
export async function startSink(toml: string, label: string): Promise<Sink> {
  const dir = tempDir(`cdc-sink-${label}-`);
  const port = await freePort();
  const configFile = join(dir, "sink.toml");
  // [http] may already be in the config (sink.toml): point its listen at our port, else add it
  const http = `listen = "127.0.0.1:${port}"`;
  writeFileSync(configFile, /^\[http\]/m.test(toml) ? toml.replace(/^listen\s*=.*$/m, http) : `[http]\n${http}\n${toml}`);
  const logFile = join(dir, "cdc-sink.log");
  const proc = Bun.spawn([process.execPath, "src/main.ts", "run", "--config", configFile], {
    cwd: ROOT,
    stdin: "ignore",
    stdout: "ignore",
    stderr: Bun.file(logFile),
    env: { ...process.env, NODE_ENV: "production" },
  });
  let gone = false;
  const exited = proc.exited.then((c) => {
    gone = true;
    return c;
  });
  onCleanup(() => {
    if (!gone) try { process.kill(proc.pid, "SIGKILL"); } catch { /* gone */ }
  });
  const log = (lines = 30) => {
    try {
      return readFileSync(logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  };
  const url = `http://127.0.0.1:${port}`;
  const metrics = async () => (await fetch(`${url}/metrics`)).text();
  return {
    label,
    pid: proc.pid,
    port,
    logFile,
    exited,
    async ready(timeoutMs = 60_000) {
      const end = Date.now() + timeoutMs;
      let why = "";
      while (Date.now() < end) {
        if (gone) throw new Error(`cdc-sink ${label} exited with ${await exited} before it was ready:\n${log()}`);
        try {
          const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) });
          if (r.ok) return;
          why = await r.text();
        } catch (e) {
          why = String(e);
        }
        await sleep(100);
      }
      throw new Error(`cdc-sink ${label} not ready after ${timeoutMs} ms (${why}):\n${log()}`);
    },
    async term() {
      if (!gone) proc.kill("SIGTERM");
      return exited;
    },
    async kill9() {
      if (!gone) proc.kill("SIGKILL");
      await exited;
    },
    metrics,
    async metric(series: string) {
      const text = await metrics();
      const line = text.split("\n").find((l) => l.startsWith(`${series} `));
      return line ? Number(line.slice(series.length + 1)) : 0;
    },
    log,
  };
}

// --- source writers and comparisons -----------------------------------------------------------

export interface WriterStats {
  transactions: number;
  inserted: number;
  updated: number;
  deleted: number;
  errors: number;
}

/**
 * Changes ecom's orders and order_items in small transactions (≈ `txPerSec`) until stopped:
 * each inserts an order with one or two items, updates two live orders and, every fourth, deletes
 * one (its items go with it, ON DELETE CASCADE). Connection errors are counted and retried.
 */
export function startOrderWriter(url: string, opts: { txPerSec?: number; bookIds: number[] }) {
  const sql = pg(url, 1);
  const stats: WriterStats = { transactions: 0, inserted: 0, updated: 0, deleted: 0, errors: 0 };
  const live: number[] = [];
  let stopped = false;
  let n = 0;
  const pause = 1000 / (opts.txPerSec ?? 50);
  const pick = <T>(a: T[]) => a[Math.floor(Math.random() * a.length)]!;
  const statuses = ["pending", "paid", "shipped", "delivered", "cancelled", "refunded"];
  const loop = (async () => {
    while (!stopped) {
      const t = performance.now();
      try {
        const del = ++n % 4 === 0 && live.length > 10 ? live.splice(Math.floor(Math.random() * live.length), 1)[0] : undefined;
        const touched = [pick(live), pick(live)].filter((x) => x !== undefined && x !== del);
        const id = await sql.begin(async (tx) => {
          const [o] = await tx`INSERT INTO orders (customer_id, status, total_amount) VALUES (${1 + (n % 97)}, 'pending', ${(n % 10000) / 100}) RETURNING id`;
          const oid = Number(o!.id);
          for (let i = 0; i < 1 + (n % 2); i++)
            await tx`INSERT INTO order_items (order_id, book_id, quantity, unit_price) VALUES (${oid}, ${pick(opts.bookIds)}, ${1 + (n % 3)}, ${((n + i) % 5000) / 100 + 1})`;
          for (const u of touched) await tx`UPDATE orders SET status = ${pick(statuses)}, total_amount = total_amount + 1, updated_at = now() WHERE id = ${u!}`;
          if (del !== undefined) await tx`DELETE FROM orders WHERE id = ${del}`;
          return oid;
        });
        live.push(id);
        stats.transactions++;
        stats.inserted++;
        stats.updated += touched.length;
        if (del !== undefined) stats.deleted++;
      } catch {
        stats.errors++;
        await sleep(100);
      }
      const left = pause - (performance.now() - t);
      if (left > 0) await sleep(left);
    }
  })();
  return {
    stats,
    async stop(): Promise<WriterStats> {
      stopped = true;
      await loop;
      await sql.end();
      return stats;
    },
  };
}

const COLUMNS: Record<string, { key: string; cols: string }> = {
  orders: { key: "id", cols: "id, customer_id, status, total_amount, currency, created_at, updated_at" },
  order_items: { key: "id", cols: "id, order_id, book_id, quantity, unit_price, created_at" },
  books: { key: "id", cols: "id, isbn, title, author, price, published_on, tags, attributes, created_at, updated_at" },
  inventory: { key: "book_id", cols: "book_id, quantity, reserved, warehouse, updated_at" },
};
export const TARGET: Record<string, string> = { orders: "fact_orders", order_items: "fact_order_items", books: "dim_books", inventory: "fact_inventory" };

/** Rows of a source table and of its analytics table (live rows), each as one line of text. */
export async function tableRows(src: Sql, dst: Sql, table: string): Promise<{ source: string[]; analytics: string[] }> {
  const { key, cols } = COLUMNS[table]!;
  const q = (t: string, where = "") => `SELECT row(${cols})::text AS r FROM ${t} ${where} ORDER BY ${key}`;
  const [s, d] = await Promise.all([src.unsafe(q(table)), dst.unsafe(q(TARGET[table]!, "WHERE _cdc_deleted_at IS NULL"))]);
  return { source: s.map((r) => r.r as string), analytics: d.map((r) => r.r as string) };
}

/** null when analytics holds exactly the source's rows of `tables`, else what differs (a few lines). */
export async function difference(src: Sql, dst: Sql, tables: string[]): Promise<string | null> {
  const out: string[] = [];
  for (const t of tables) {
    const { source, analytics } = await tableRows(src, dst, t);
    const a = new Set(analytics);
    const s = new Set(source);
    const missing = source.filter((r) => !a.has(r));
    const extra = analytics.filter((r) => !s.has(r));
    if (missing.length || extra.length)
      out.push(`${t}: ${source.length} source rows, ${analytics.length} analytics rows; missing or different ${JSON.stringify(missing.slice(0, 3))}, extra or stale ${JSON.stringify(extra.slice(0, 3))}`);
  }
  return out.length ? out.join("\n") : null;
}

/** Waits until analytics equals the source for `tables`; throws with the difference after `timeoutMs`. */
export async function converge(src: Sql, dst: Sql, tables: string[], timeoutMs = 60_000): Promise<number> {
  const t = performance.now();
  let diff: string | null = "not compared yet";
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    diff = await difference(src, dst, tables);
    if (!diff) return performance.now() - t;
    await sleep(250);
  }
  throw new Error(`analytics did not converge in ${timeoutMs} ms:\n${diff}`);
}

/**
 * Samples (_cdc_commit_lsn, _cdc_lsn) of every analytics row of `tables` until stopped; a row whose
 * position ever goes back (an older change applied over a newer one, or a deleted row coming back
 * with an older position) is a violation.
 */
export function watchPositions(url: string, tables: Array<{ table: string; key: string }>, everyMs = 100) {
  const sql = pg(url, 1);
  const last = new Map<string, [bigint, bigint]>();
  const violations: string[] = [];
  let samples = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      for (const { table, key } of tables) {
        const rows = await sql.unsafe(`SELECT ${key}::text AS k, _cdc_commit_lsn::text AS c, _cdc_lsn::text AS l FROM ${table}`).catch(() => []);
        for (const r of rows) {
          const id = `${table}/${r.k}`;
          const pos: [bigint, bigint] = [BigInt(r.c ?? 0), BigInt(r.l ?? 0)];
          const before = last.get(id);
          if (before && (pos[0] < before[0] || (pos[0] === before[0] && pos[1] < before[1])))
            violations.push(`${id} went from (${before[0]}, ${before[1]}) back to (${pos[0]}, ${pos[1]})`);
          last.set(id, pos);
        }
      }
      samples++;
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      await sql.end();
      return { samples, rows: last.size, violations };
    },
  };
}

export { pg as connect };
