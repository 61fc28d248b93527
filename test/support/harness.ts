// The Kafka-mode pipeline wired in-process against a real PostgreSQL and librdkafka's mock cluster.
import { readFileSync } from "node:fs";
import postgres, { type Sql } from "postgres";
import { parseConfig, type Config } from "../../src/config.ts";
import { createDaemon, type Daemon } from "../../src/daemon.ts";
import { createLogger, silentLogger } from "../../src/log.ts";
import type { Metrics } from "../../src/metrics.ts";

export const ROOT = new URL("../../", import.meta.url).pathname;

export async function analyticsDb(url: string): Promise<Sql> {
  const sql = postgres(url, { max: 4, onnotice: () => {} });
  await sql.unsafe(readFileSync(`${ROOT}sql/analytics-ddl.sql`, "utf8"));
  return sql;
}

export const TOPICS = {
  orders: "ecom-connector.public.orders",
  items: "ecom-connector.public.order_items",
  books: "ecom-connector.public.books",
  inventory: "inventory-connector.public.inventory",
};

export function sinkToml(opts: { bootstrap: string; db: string; group: string; extra?: string; mappingsExtra?: Partial<Record<keyof typeof TOPICS, string>> }): string {
  const m = (k: keyof typeof TOPICS, table: string) => `
[[mappings]]
topic = "${TOPICS[k]}"
table = "${table}"
${opts.mappingsExtra?.[k] ?? ""}`;
  return `
[kafka]
bootstrap_servers = "${opts.bootstrap}"
group_id = "${opts.group}"
[kafka.properties]
"fetch.wait.max.ms" = 10
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500

[postgres]
url = "${opts.db}"

[http]
listen = "127.0.0.1:0"

${opts.extra ?? ""}
${m("orders", "fact_orders")}
${m("items", "fact_order_items")}
${m("books", "dim_books")}
${m("inventory", "fact_inventory")}
`;
}

export function config(toml: string): Config {
  const r = parseConfig(toml);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.config;
}

export interface Running {
  daemon: Daemon;
  metrics: Metrics;
  /** the daemon's exit code once it stopped */
  done: Promise<number>;
  sql: Sql;
  stop(): Promise<void>;
}

/** The daemon in-process, with short retries; `stop()` waits for a clean exit. */
export async function startDaemon(cfg: Config, opts: { verbose?: boolean } = {}): Promise<Running> {
  const log = opts.verbose ? createLogger({ level: "debug" }) : silentLogger;
  const daemon = createDaemon({ ...cfg, retry: { initial_ms: 50, max_ms: 1000 }, http: { ...cfg.http, enabled: false } }, { log });
  const done = daemon.run();
  const sql = postgres(cfg.postgres.url!, { max: 4, onnotice: () => {} });
  return {
    daemon,
    metrics: daemon.metrics,
    done,
    sql,
    async stop() {
      daemon.stop();
      const code = await done;
      await sql.end({ timeout: 2 });
      if (code !== 0) throw new Error(`the daemon exited with ${code}`);
    },
  };
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}
