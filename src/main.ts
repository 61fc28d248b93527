#!/usr/bin/env bun
// cdc-sink CLI: run (default), validate, check.
import postgres, { type Sql } from "postgres";
import pkg from "../package.json" with { type: "json" };
import { type Config, ConfigError, connectionOptions, formatIssue, loadConfig } from "./config.ts";
import { createHttpApp, serve } from "./http.ts";
import { KafkaConsumer, librdkafkaVersion } from "./kafka/native.ts";
import { createLogger, errorInfo, type Logger } from "./log.ts";
import { createMetrics } from "./metrics.ts";
import { createPipeline, type Source } from "./pipeline.ts";
import { createApplier } from "./sink/apply.ts";
import { ensureStateTables, SchemaError } from "./sink/schema.ts";
import { loadTargets } from "./sink/targets.ts";
import { createKafkaSource } from "./sources/kafka.ts";
import { createPgSource, slotState, sourceProblems } from "./sources/postgres.ts";

export const EXIT = { OK: 0, FAILURE: 1, USAGE: 64, CONFIG: 78 } as const;

const HELP: Record<string, string> = {
  main: `cdc-sink ${pkg.version} — Debezium / PostgreSQL change events into an analytics PostgreSQL, exactly once

Usage: cdc-sink [command] --config sink.toml

Commands:
  run        replicate until SIGTERM/SIGINT (default)
  validate   check the config file offline; exit 0, or 78 listing every problem
  check      online preflight: broker, topics, tables, keys and columns
Options:
  --config F   config file (or CDC_SINK_CONFIG)
  --version    print the version
  --help       this text, or "cdc-sink <command> --help"

Exit codes: 0 ok, 1 runtime failure, 64 usage error, 78 configuration error.`,
  run: `Usage: cdc-sink run --config sink.toml

Replicates until SIGTERM/SIGINT: finishes the batch in flight, checkpoints it, leaves the
consumer group and exits 0 (within 25 s; a second signal exits at once).
Serves /metrics, /healthz and /readyz on [http] listen (default 0.0.0.0:8080).`,
  validate: `Usage: cdc-sink validate --config sink.toml

Parses and validates the config (environment overrides and secret files included) without
connecting anywhere. Exit 0 when valid, 78 with one line per problem naming its key and line.`,
  check: `Usage: cdc-sink check --config sink.toml

Connects to every endpoint: the Kafka brokers (each mapped topic must exist) and the analytics
database (each mapped table must exist with its key, bookkeeping columns and mapped columns).
Exit 0 when everything is in place, 1 listing what is wrong and how to fix it.`,
};

interface Args {
  command: string;
  config?: string;
  help: boolean;
  version: boolean;
}

function parseArgs(argv: string[]): Args | string {
  const a: Args = { command: "run", help: false, version: false };
  let commandSet = false;
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i]!;
    if (x === "--help" || x === "-h") a.help = true;
    else if (x === "--version" || x === "-v") a.version = true;
    else if (x === "--config" || x === "-c") {
      a.config = argv[++i];
      if (!a.config) return "--config needs a file";
    } else if (x.startsWith("--config=")) a.config = x.slice(9);
    else if (!x.startsWith("-") && !commandSet && x in HELP && x !== "main") {
      a.command = x;
      commandSet = true;
    } else return `unknown argument ${x}`;
  }
  return a;
}

export function openDatabase(c: Config["postgres"], max = 4): Sql {
  const { url, options } = connectionOptions(c);
  const opts = { ...options, max, onnotice: () => {}, idle_timeout: 60, max_lifetime: 60 * 30, connection: { application_name: "cdc-sink" } };
  return url ? postgres(url, opts) : postgres(opts);
}

function configOrExit(file: string | undefined, log: (s: string) => void): Config | number {
  const path = file ?? process.env.CDC_SINK_CONFIG;
  if (!path) {
    log("error: --config is required (or set CDC_SINK_CONFIG)");
    return EXIT.USAGE;
  }
  try {
    return loadConfig(path);
  } catch (e) {
    if (e instanceof ConfigError) {
      log(`${e.file}: invalid configuration`);
      for (const i of e.issues) log(`  ${formatIssue(i)}`);
      return EXIT.CONFIG;
    }
    throw e;
  }
}

async function check(config: Config, out: (s: string) => void): Promise<number> {
  const problems: string[] = [];
  if (config.source.kind === "kafka" && config.kafka) {
    const c = new KafkaConsumer({
      "bootstrap.servers": config.kafka.bootstrap_servers,
      "group.id": config.kafka.group_id,
      ...config.kafka.properties,
      "socket.timeout.ms": 5000,
    });
    try {
      const topics = new Map((await c.listTopics(5000)).map((t) => [t.topic, t]));
      for (const m of config.mappings) {
        const t = topics.get(m.topic!);
        if (!t || t.error) problems.push(`topic ${m.topic} does not exist (is the Debezium connector registered? scripts/register-connectors.sh)`);
        else out(`ok   topic ${m.topic} (${t.partitions} partitions)`);
      }
    } catch (e) {
      problems.push(`broker ${config.kafka.bootstrap_servers}: ${(e as Error).message}`);
    } finally {
      await c.close();
    }
  }
  for (const s of config.postgres_sources) {
    const admin = openDatabase({ ...s, state_schema: "" }, 1);
    try {
      const tables = config.mappings.filter((m) => m.source === s.name).map((m) => m.source_table!);
      const found = await sourceProblems(admin, tables);
      for (const f of found) problems.push(`source ${s.name}: ${f}`);
      if (!found.length) out(`ok   source ${s.name}: wal_level logical, replication allowed, ${tables.length} tables with a replica identity`);
      for (const line of await slotState(admin, s)) out(`info source ${s.name}: ${line}`);
    } catch (e) {
      problems.push(`source ${s.name}: ${(e as Error).message}`);
    } finally {
      await admin.end({ timeout: 2 });
    }
  }
  const sql = openDatabase(config.postgres, 1);
  try {
    await sql`SELECT 1`;
    out(`ok   analytics database reachable`);
    try {
      const targets = await loadTargets(sql, config.mappings);
      for (const t of targets) {
        for (const col of t.mapping.columns ?? []) if (!t.columns.has(col)) problems.push(`${t.table.name}: mapped column ${col} does not exist`);
        out(`ok   table ${t.table.name} (key ${t.key.join(", ")}; ${t.columns.size} columns mapped)`);
      }
    } catch (e) {
      if (e instanceof SchemaError) problems.push(...e.message.split("; "));
      else throw e;
    }
  } catch (e) {
    problems.push(`analytics database: ${(e as Error).message}`);
  } finally {
    await sql.end({ timeout: 2 });
  }
  for (const p of problems) out(`FAIL ${p}`);
  return problems.length ? EXIT.FAILURE : EXIT.OK;
}

async function run(config: Config, log: Logger): Promise<number> {
  const metrics = createMetrics();
  const sql = openDatabase(config.postgres);
  let lastBeat = Date.now();
  let stopping = false;
  let source: Source | undefined;
  let pipeline: ReturnType<typeof createPipeline> | undefined;

  const http = config.http.enabled
    ? await serve(
        createHttpApp({
          metrics: () => metrics.registry.render(),
          liveness: () => {
            const fatal = (source as { fatalError?: string } | undefined)?.fatalError;
            if (fatal) return `librdkafka fatal error: ${fatal}`;
            const idle = Date.now() - lastBeat;
            return idle > 120_000 ? `processing loop stalled for ${Math.round(idle / 1000)} s` : null;
          },
          readiness: () => {
            const r: string[] = [];
            if (stopping) r.push("draining (shutdown in progress)");
            if (!source?.ready()) r.push(config.source.kind === "kafka" ? "no partitions assigned" : "replication not streaming");
            if (metrics.dbUp.value() !== 1) r.push(`analytics database not reachable${pipeline?.lastError ? `: ${pipeline.lastError}` : ""}`);
            return r;
          },
        }),
        config.http.listen,
      )
    : undefined;
  if (http) log.info("http listening", { listen: config.http.listen, port: http.port });

  const onSignal = (sig: string) => {
    if (stopping) {
      log.warn("second signal: exiting now", { signal: sig });
      process.exit(EXIT.FAILURE);
    }
    stopping = true;
    log.info("shutting down: finishing the batch in flight", { signal: sig });
    pipeline?.stop();
    setTimeout(() => {
      log.error("shutdown took longer than 25 s; exiting");
      process.exit(EXIT.FAILURE);
    }, 25_000).unref();
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));

  try {
    // The database may not be up yet: retry with backoff, not ready meanwhile.
    let targets;
    for (let attempt = 1; !targets; attempt++) {
      try {
        await ensureStateTables(sql, config.postgres.state_schema);
        targets = await loadTargets(sql, config.mappings);
        metrics.dbUp.set({}, 1);
      } catch (e) {
        if (e instanceof SchemaError) {
          log.error("analytics schema does not fit the mappings", { problems: e.message.split("; ") });
          return EXIT.CONFIG;
        }
        metrics.retries.inc({ stage: "apply" });
        metrics.errors.inc({ stage: "apply", code: String(errorInfo(e).code ?? "UNKNOWN") });
        const wait = Math.min(config.retry.max_ms, config.retry.initial_ms * 2 ** attempt);
        log.error("analytics database not reachable; retrying", { ...errorInfo(e), attempt, retryInMs: wait });
        await new Promise((r) => setTimeout(r, wait));
        lastBeat = Date.now();
        if (stopping) return EXIT.OK;
      }
    }

    const applier = createApplier({ sql, stateSchema: config.postgres.state_schema, metrics, log });
    source =
      config.source.kind === "kafka"
        ? createKafkaSource({ config: config.kafka!, targets, applier, metrics, log })
        : createPgSource({ config, targets, applier, analytics: sql, metrics, log });
    pipeline = createPipeline({
      source,
      applier,
      limits: { maxEvents: config.batch.max_events, maxBytes: config.batch.max_bytes, maxLatencyMs: config.batch.max_latency_ms },
      retry: { initialMs: config.retry.initial_ms, maxMs: config.retry.max_ms },
      metrics,
      log,
      heartbeat: () => (lastBeat = Date.now()),
    });
    if (stopping) pipeline.stop();
    try {
      await pipeline.run();
    } catch (e) {
      log.error("pipeline failed", errorInfo(e));
      return EXIT.FAILURE;
    }
    log.info("stopped cleanly");
    return EXIT.OK;
  } finally {
    await http?.close();
    await sql.end({ timeout: 5 });
  }
}

export async function main(argv: string[]): Promise<number> {
  const err = (s: string) => process.stderr.write(s + "\n");
  const out = (s: string) => process.stdout.write(s + "\n");
  const a = parseArgs(argv);
  if (typeof a === "string") {
    err(`error: ${a}\n\n${HELP.main}`);
    return EXIT.USAGE;
  }
  if (a.version) {
    out(`cdc-sink ${pkg.version} (librdkafka ${librdkafkaVersion()})`);
    return EXIT.OK;
  }
  if (a.help) {
    out(HELP[a.command === "run" && !argv.includes("run") ? "main" : a.command]!);
    return EXIT.OK;
  }
  const config = configOrExit(a.config, err);
  if (typeof config === "number") return config;
  if (a.command === "validate") {
    out(`${a.config ?? process.env.CDC_SINK_CONFIG}: valid (${config.mappings.length} mappings, source ${config.source.kind})`);
    return EXIT.OK;
  }
  if (a.command === "check") return check(config, out);
  return run(config, createLogger({ level: config.log.level }));
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(JSON.stringify({ level: "error", time: new Date().toISOString(), msg: "fatal", ...errorInfo(e), stack: (e as Error).stack }) + "\n");
      process.exit(EXIT.FAILURE);
    },
  );
}
