#!/usr/bin/env bun
// cdc-sink CLI: run (default), validate, check, verify, repair, init, dlq.
import { parseArgs } from "node:util";
import pkg from "../package.json" with { type: "json" };
import { check } from "./check.ts";
import { type Config, type ConfigIssue, environmentKeys, formatIssue, loadConfig } from "./config.ts";
import { createDaemon, EXIT } from "./daemon.ts";
import { DLQ_HELP, runDlq } from "./dlq/cli.ts";
import { ConfigError, errorInfo } from "./errors.ts";
import { librdkafkaFeatures, librdkafkaVersion } from "./kafka/index.ts";
import { createLogger } from "./log.ts";
import { INIT_HELP, runInit } from "./provision/cli.ts";
import { REPAIR_HELP, runRepair, runVerify, VERIFY_HELP } from "./verify/index.ts";

/** A second signal, or a shutdown longer than this, exits at once. */
const SHUTDOWN_BUDGET_MS = 25_000;

const HELP: Record<string, string> = {
  main: `cdc-sink ${pkg.version} — Debezium / PostgreSQL change events into an analytics PostgreSQL, exactly once

Usage: cdc-sink [command] --config sink.toml

Commands:
  run        replicate until SIGTERM/SIGINT (default)
  validate   check the config file offline; exit 0, or 78 listing every problem
  check      online preflight: broker, topics, tables, keys and columns
  verify     compare the analytics tables with their sources; exit 0 equal, 1 differences
  repair     verify, then mend the keys that differ (safe while the daemon runs)
  init       the DDL of missing analytics tables and columns, derived from the sources (--apply runs it)
  dlq        dead letters: list, show, retry (once the cause is fixed), discard
Options:
  --config F   config file (or CDC_SINK_CONFIG)
  --version    print the version and librdkafka's
  --help       this text, or "cdc-sink <command> --help"

Exit codes: 0 ok, 1 runtime failure, 64 usage error, 78 configuration error.

Every key can be set from the environment (values read as TOML values); "cdc-sink help env"
lists them all, e.g. CDC_SINK_POSTGRES_URL, CDC_SINK_MAPPINGS_0_TABLE,
CDC_SINK_KAFKA_PROPERTIES_FETCH_WAIT_MAX_MS. Any key x may be given as x_file (a file's content).`,
  verify: VERIFY_HELP,
  repair: REPAIR_HELP,
  init: INIT_HELP,
  dlq: DLQ_HELP,
  run: `Usage: cdc-sink run --config sink.toml

Replicates until SIGTERM/SIGINT: finishes the batch in flight, checkpoints it, leaves the
consumer group and exits 0 (within 25 s; a second signal exits at once).
Serves /metrics, /healthz and /readyz on [http] listen (default 0.0.0.0:8080).`,
  validate: `Usage: cdc-sink validate --config sink.toml [--check-files]

Parses and validates the config (environment overrides and librdkafka properties included)
without connecting anywhere. Files named by x_file keys are read only with --check-files, so a
production config validates without its secrets. Exit 0 when valid, 78 with one line per problem
naming its key and line.`,
  check: `Usage: cdc-sink check --config sink.toml

Connects to every endpoint: the Kafka brokers (each mapped topic must exist), each PostgreSQL
source (wal_level, privileges, replica identity, slot and publication) and the analytics database
(each mapped table must exist with its key, bookkeeping columns and mapped columns).
Exit 0 when everything is in place, 1 listing what is wrong and how to fix it.`,
};

const COMMANDS = ["run", "validate", "check", "verify", "repair", "init", "dlq", "help"];

interface Args {
  command: string;
  config?: string;
  help: boolean;
  version: boolean;
  checkFiles: boolean;
  topic?: string;
  table?: string;
  json: boolean;
  apply: boolean;
  ids: string[];
  limit?: number;
  note?: string;
}

function args(argv: string[]): Args | string {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "v" },
        "check-files": { type: "boolean" },
        table: { type: "string" },
        json: { type: "boolean" },
        apply: { type: "boolean" },
        id: { type: "string", multiple: true },
        limit: { type: "string" },
        note: { type: "string" },
      },
    });
  } catch (e) {
    return (e as Error).message;
  }
  const [command = "run", ...extra] = parsed.positionals;
  if (!COMMANDS.includes(command)) return `unknown command ${command}`;
  const positionals = command === "help" || command === "dlq" ? 1 : 0;
  if (extra.length > positionals) return `unexpected argument ${extra[positionals]}`;
  const v = parsed.values;
  const only = (flag: string, commands: string[]) => (v[flag as keyof typeof v] !== undefined && !commands.includes(command) ? `--${flag} is for ${commands.join(", ")}` : undefined);
  const misplaced = only("apply", ["init"]) ?? only("id", ["dlq"]) ?? only("limit", ["dlq"]) ?? only("note", ["dlq"]);
  if (misplaced) return misplaced;
  const limit = v.limit === undefined ? undefined : Number(v.limit);
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) return `--limit ${v.limit}: expected a positive integer`;
  return { command, config: v.config, help: v.help ?? false, version: v.version ?? false, checkFiles: v["check-files"] ?? false, topic: extra[0], table: v.table, json: v.json ?? false, apply: v.apply ?? false, ids: v.id ?? [], limit, note: v.note };
}

function configOrExit(file: string | undefined, print: (s: string) => void, readFiles = true, warnings: ConfigIssue[] = []): Config | number {
  const path = file ?? process.env.CDC_SINK_CONFIG;
  if (!path) {
    print("error: --config is required (or set CDC_SINK_CONFIG)");
    return EXIT.USAGE;
  }
  try {
    return loadConfig(path, process.env, { readFiles, warnings });
  } catch (e) {
    if (e instanceof ConfigError) {
      print(`${e.file}: invalid configuration`);
      for (const i of e.issues) print(`  ${formatIssue(i)}`);
      return EXIT.CONFIG;
    }
    throw e;
  }
}

async function run(config: Config, warnings: ConfigIssue[]): Promise<number> {
  const log = createLogger({ level: config.log.level });
  for (const w of warnings) log.warn("configuration", { key: w.key, line: w.line, problem: w.message });
  const daemon = createDaemon(config, { log });
  let signalled = false;
  const onSignal = (signal: string) => {
    if (signalled) {
      log.warn("second signal: exiting now", { signal });
      process.exit(EXIT.FAILURE);
    }
    signalled = true;
    log.info("shutting down: finishing the batch in flight", { signal });
    daemon.stop();
    setTimeout(() => {
      log.error(`shutdown took longer than ${SHUTDOWN_BUDGET_MS / 1000} s; exiting`);
      process.exit(EXIT.FAILURE);
    }, SHUTDOWN_BUDGET_MS).unref();
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  return daemon.run();
}

export async function main(argv: string[]): Promise<number> {
  const err = (s: string) => process.stderr.write(s + "\n");
  const out = (s: string) => process.stdout.write(s + "\n");
  const a = args(argv);
  if (typeof a === "string") {
    err(`error: ${a}\n\n${HELP.main}`);
    return EXIT.USAGE;
  }
  if (a.version) {
    out(`cdc-sink ${pkg.version}\nlibrdkafka ${librdkafkaVersion()} (${librdkafkaFeatures().join(", ")})`);
    return EXIT.OK;
  }
  if (a.command === "help" && a.topic === "env") {
    out("Environment overrides (N: the index of an [[array]] entry; <PROPERTY>: a key with dots as underscores):");
    for (const [path, env] of environmentKeys()) out(`  ${env.padEnd(52)} ${path}`);
    return EXIT.OK;
  }
  if (a.help || a.command === "help") {
    out(HELP[a.command === "help" ? (a.topic && a.topic in HELP ? a.topic : "main") : argv.some((x) => COMMANDS.includes(x)) ? a.command : "main"]!);
    return EXIT.OK;
  }
  const warnings: ConfigIssue[] = [];
  const config = configOrExit(a.config, err, a.command !== "validate" || a.checkFiles, warnings);
  if (typeof config === "number") return config;
  if (a.command !== "run") for (const w of warnings) err(`warning: ${formatIssue(w)}`);
  if (a.command === "validate") {
    out(`${a.config ?? process.env.CDC_SINK_CONFIG}: valid (${config.mappings.length} mappings, source ${config.source.kind})`);
    return EXIT.OK;
  }
  if (a.command === "check") return (await check(config, out)) ? EXIT.OK : EXIT.FAILURE;
  if (a.command === "verify" || a.command === "repair")
    return (a.command === "verify" ? runVerify : runRepair)(config, { table: a.table, json: a.json, print: out, log: createLogger({ level: config.log.level }) });
  if (a.command === "init") return runInit(config, { apply: a.apply, print: out, err });
  if (a.command === "dlq") return runDlq(config, a.topic ?? "", { table: a.table, ids: a.ids, json: a.json, limit: a.limit, note: a.note, print: out, log: createLogger({ level: config.log.level }) });
  return run(config, warnings);
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
