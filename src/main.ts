#!/usr/bin/env bun
// cdc-sink CLI: run (default), validate, check.
import { parseArgs } from "node:util";
import pkg from "../package.json" with { type: "json" };
import { check } from "./check.ts";
import { type Config, formatIssue, loadConfig } from "./config.ts";
import { createDaemon, EXIT } from "./daemon.ts";
import { ConfigError, errorInfo } from "./errors.ts";
import { librdkafkaVersion } from "./kafka/native.ts";
import { createLogger } from "./log.ts";

/** A second signal, or a shutdown longer than this, exits at once. */
const SHUTDOWN_BUDGET_MS = 25_000;

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

Connects to every endpoint: the Kafka brokers (each mapped topic must exist), each PostgreSQL
source (wal_level, privileges, replica identity, slot and publication) and the analytics database
(each mapped table must exist with its key, bookkeeping columns and mapped columns).
Exit 0 when everything is in place, 1 listing what is wrong and how to fix it.`,
};

const COMMANDS = ["run", "validate", "check"];

interface Args {
  command: string;
  config?: string;
  help: boolean;
  version: boolean;
}

function args(argv: string[]): Args | string {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { config: { type: "string", short: "c" }, help: { type: "boolean", short: "h" }, version: { type: "boolean", short: "v" } },
    });
  } catch (e) {
    return (e as Error).message;
  }
  const [command = "run", ...extra] = parsed.positionals;
  if (!COMMANDS.includes(command)) return `unknown command ${command}`;
  if (extra.length) return `unexpected argument ${extra[0]}`;
  return { command, config: parsed.values.config, help: parsed.values.help ?? false, version: parsed.values.version ?? false };
}

function configOrExit(file: string | undefined, print: (s: string) => void): Config | number {
  const path = file ?? process.env.CDC_SINK_CONFIG;
  if (!path) {
    print("error: --config is required (or set CDC_SINK_CONFIG)");
    return EXIT.USAGE;
  }
  try {
    return loadConfig(path);
  } catch (e) {
    if (e instanceof ConfigError) {
      print(`${e.file}: invalid configuration`);
      for (const i of e.issues) print(`  ${formatIssue(i)}`);
      return EXIT.CONFIG;
    }
    throw e;
  }
}

async function run(config: Config): Promise<number> {
  const log = createLogger({ level: config.log.level });
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
    out(`cdc-sink ${pkg.version} (librdkafka ${librdkafkaVersion()})`);
    return EXIT.OK;
  }
  if (a.help) {
    out(HELP[argv.some((x) => COMMANDS.includes(x)) ? a.command : "main"]!);
    return EXIT.OK;
  }
  const config = configOrExit(a.config, err);
  if (typeof config === "number") return config;
  if (a.command === "validate") {
    out(`${a.config ?? process.env.CDC_SINK_CONFIG}: valid (${config.mappings.length} mappings, source ${config.source.kind})`);
    return EXIT.OK;
  }
  if (a.command === "check") return (await check(config, out)) ? EXIT.OK : EXIT.FAILURE;
  return run(config);
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
