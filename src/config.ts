// sink.toml: parsed with smol-toml, overridden by CDC_SINK_* variables, secrets read from files,
// validated with valibot. Problems are returned as data, each naming its key (and line).
import { readFileSync } from "node:fs";
import { parse as parseToml } from "smol-toml";
import * as v from "valibot";
import { ConfigError } from "./errors.ts";

const positiveInt = (d: number) => v.optional(v.pipe(v.number(), v.integer(), v.minValue(1)), d);

/** Kafka source: bootstrap servers, group and raw librdkafka properties passed through. */
const KafkaSchema = v.strictObject({
  bootstrap_servers: v.pipe(v.string(), v.nonEmpty("must not be empty")),
  group_id: v.optional(v.pipe(v.string(), v.nonEmpty()), "cdc-sink"),
  /** librdkafka consumer properties, passed as they are */
  properties: v.optional(v.record(v.string(), v.union([v.string(), v.number(), v.boolean()])), {}),
  /** max messages per consume call */
  fetch_max_messages: positiveInt(5000),
  /** commit applied offsets to Kafka too (for lag tooling); the checkpoint table stays the truth */
  commit_offsets: v.optional(v.boolean(), true),
});

/** A PostgreSQL connection: url, or parts; password from password_file. */
const ConnectionEntries = {
  url: v.optional(v.string()),
  host: v.optional(v.string()),
  port: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535))),
  database: v.optional(v.string()),
  user: v.optional(v.string()),
  password: v.optional(v.string()),
  /** connect timeout in seconds */
  connect_timeout: v.optional(v.number(), 10),
};
const needsUrlOrHost = <T extends { url?: string; host?: string }>() => v.check<T, string>((c) => Boolean(c.url || c.host), "needs url or host");

/** The analytics database the sink writes to. */
const PostgresSchema = v.pipe(
  v.strictObject({
    ...ConnectionEntries,
    /** schema for the sink's own tables (checkpoints, dead letters, tombstones) */
    state_schema: v.optional(v.pipe(v.string(), v.regex(/^[a-z_][a-z0-9_]*$/, "must be a lower-case SQL identifier")), "cdc_sink"),
  }),
  needsUrlOrHost(),
);

/** A source database replicated by logical replication (pgoutput). */
const PgSourceSchema = v.pipe(
  v.strictObject({
    name: v.pipe(v.string(), v.regex(/^[a-z_][a-z0-9_]*$/, "must be a lower-case identifier")),
    ...ConnectionEntries,
    slot: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9_]+$/, "must be lower-case letters, digits and _"))),
    publication: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9_]+$/, "must be lower-case letters, digits and _"))),
    /** log a warning when the slot retains more WAL than this */
    wal_retained_warn_bytes: v.optional(v.number(), 1024 ** 3),
    /** copy pre-existing rows when the slot is created */
    snapshot: v.optional(v.boolean(), true),
    /** source columns added later: ignore them, or add them to the analytics table */
    new_columns: v.optional(v.picklist(["ignore", "add"]), "ignore"),
  }),
  needsUrlOrHost(),
);

/**
 * How the Debezium connectors encode values, named as in the connector config: schemaless values
 * are read by these modes (a message with a schema follows its schema). Unset keys take Debezium's
 * defaults.
 */
const DebeziumSchema = v.strictObject({
  "time.precision.mode": v.optional(v.picklist(["adaptive", "adaptive_time_microseconds", "connect"])),
  "decimal.handling.mode": v.optional(v.picklist(["precise", "double", "string"])),
  "binary.handling.mode": v.optional(v.picklist(["bytes", "base64", "base64-url-safe", "hex"])),
  "interval.handling.mode": v.optional(v.picklist(["numeric", "string"])),
  "unavailable.value.placeholder": v.optional(v.pipe(v.string(), v.nonEmpty())),
  "money.fraction.digits": v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(20))),
});
export type DebeziumModes = v.InferOutput<typeof DebeziumSchema>;

/** One stream mapped to one analytics table. */
const MappingSchema = v.strictObject({
  /** Kafka topic (Kafka source) */
  topic: v.optional(v.string()),
  /** source name (PostgreSQL source) */
  source: v.optional(v.string()),
  /** source table as schema.table (PostgreSQL source) */
  source_table: v.optional(v.string()),
  /** target table, optionally schema-qualified */
  table: v.pipe(v.string(), v.regex(/^([a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*$/, "must be [schema.]table in lower case")),
  /** key columns (target names); default: the table's primary key */
  key: v.optional(v.array(v.string())),
  /** only these source columns are copied; default: every column the table has */
  columns: v.optional(v.array(v.string())),
  /** source column -> target column */
  rename: v.optional(v.record(v.string(), v.string()), {}),
  delete_mode: v.optional(v.picklist(["hard", "soft"]), "hard"),
  /** timestamptz column set on soft delete */
  soft_delete_column: v.optional(v.string(), "_cdc_deleted_at"),
  truncate: v.optional(v.picklist(["truncate", "ignore"]), "ignore"),
  /** this topic's connector encodes differently from [debezium] */
  debezium: v.optional(DebeziumSchema),
  /** flush once this many events of this mapping are pending */
  batch_size: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  /** flush at most this long after this mapping's first pending event */
  batch_latency_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
});

/** The whole sink.toml. */
export const ConfigSchema = v.pipe(
  v.strictObject({
    source: v.optional(v.strictObject({ kind: v.picklist(["kafka", "postgres"]) }), { kind: "kafka" }),
    kafka: v.optional(KafkaSchema),
    postgres: PostgresSchema,
    postgres_sources: v.optional(v.array(PgSourceSchema), []),
    batch: v.optional(
      v.strictObject({
        max_events: positiveInt(5000),
        max_bytes: positiveInt(16 * 1024 * 1024),
        max_latency_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), 50),
      }),
      { max_events: 5000, max_bytes: 16 * 1024 * 1024, max_latency_ms: 50 },
    ),
    retry: v.optional(
      v.strictObject({ initial_ms: positiveInt(100), max_ms: positiveInt(30_000) }),
      { initial_ms: 100, max_ms: 30_000 },
    ),
    http: v.optional(v.strictObject({ listen: v.optional(v.string(), "0.0.0.0:8080"), enabled: v.optional(v.boolean(), true) }), {
      listen: "0.0.0.0:8080",
      enabled: true,
    }),
    log: v.optional(v.strictObject({ level: v.optional(v.picklist(["debug", "info", "warn", "error"]), "info") }), { level: "info" }),
    debezium: v.optional(DebeziumSchema, {}),
    mappings: v.pipe(v.array(MappingSchema), v.minLength(1, "needs at least one [[mappings]] entry")),
  }),
  v.forward(
    v.check((c) => c.source.kind !== "kafka" || c.kafka !== undefined, "source.kind = kafka needs a [kafka] section"),
    ["kafka"],
  ),
  v.forward(
    v.check((c) => c.source.kind !== "postgres" || c.postgres_sources.length > 0, "source.kind = postgres needs [[postgres_sources]]"),
    ["postgres_sources"],
  ),
);

export type Config = v.InferOutput<typeof ConfigSchema>;
export type Mapping = Config["mappings"][number];
export type PgSourceConfig = Config["postgres_sources"][number];

export interface ConfigIssue {
  key: string;
  message: string;
  line?: number;
}
export const formatIssue = (i: ConfigIssue) => `${i.key}${i.line ? ` (line ${i.line})` : ""}: ${i.message}`;

type Obj = Record<string, unknown>;

/** CDC_SINK_KAFKA_GROUP_ID=x sets kafka.group_id; values are read as TOML values when they parse as one. */
function applyEnv(raw: Obj, env: Record<string, string | undefined>, issues: ConfigIssue[]): void {
  const sections = ["source", "kafka", "postgres", "batch", "retry", "http", "log", "debezium"];
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith("CDC_SINK_") || value === undefined) continue;
    const rest = name.slice(9).toLowerCase();
    const section = sections.find((s) => rest.startsWith(s + "_"));
    if (!section) {
      if (!["CDC_SINK_CONFIG"].includes(name)) issues.push({ key: name, message: `unknown environment override (sections: ${sections.join(", ")})` });
      continue;
    }
    // the [debezium] keys are the connector's dotted names: CDC_SINK_DEBEZIUM_TIME_PRECISION_MODE
    const key = section === "debezium" ? rest.slice(section.length + 1).replaceAll("_", ".") : rest.slice(section.length + 1);
    let parsed: unknown = value;
    try {
      parsed = (parseToml(`v = ${value}`) as Obj).v;
    } catch {
      /* a plain string */
    }
    const target = ((raw[section] as Obj | undefined) ??= {}) as Obj;
    target[key] = parsed;
  }
}

/** Replaces every `x_file = "/path"` by `x = <file contents>` (Kubernetes Secret mounts). */
function readSecretFiles(node: unknown, path: string, issues: ConfigIssue[]): void {
  if (Array.isArray(node)) return node.forEach((n, i) => readSecretFiles(n, `${path}[${i}]`, issues));
  if (!node || typeof node !== "object") return;
  const o = node as Obj;
  for (const k of Object.keys(o)) {
    const p = path ? `${path}.${k}` : k;
    if (k.endsWith("_file") && typeof o[k] === "string") {
      const target = k.slice(0, -5);
      try {
        o[target] = readFileSync(o[k] as string, "utf8").replace(/\r?\n$/, "");
      } catch (e) {
        issues.push({ key: p, message: `cannot read secret file ${o[k]}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
      }
      delete o[k];
    } else if (k === "properties_files" && o[k] && typeof o[k] === "object") {
      const props = ((o.properties as Obj | undefined) ??= {}) as Obj;
      for (const [prop, file] of Object.entries(o[k] as Obj)) {
        try {
          props[prop] = readFileSync(String(file), "utf8").replace(/\r?\n$/, "");
        } catch (e) {
          issues.push({ key: `${p}.${prop}`, message: `cannot read secret file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
        }
      }
      delete o[k];
    } else {
      readSecretFiles(o[k], p, issues);
    }
  }
}

/** Best-effort line of `key` (a dotted path like mappings[1].table) in the TOML text. */
export function findLine(text: string, key: string): number | undefined {
  const lines = text.split("\n");
  const parts = key.split(".");
  let from = 0;
  let section = "";
  for (let p = 0; p < parts.length - 1; p++) {
    const m = /^([^[]+)(?:\[(\d+)\])?$/.exec(parts[p]!);
    if (!m) return undefined;
    section = section ? `${section}.${m[1]}` : m[1]!;
    const idx = m[2] === undefined ? 0 : Number(m[2]);
    const header = new RegExp(`^\\s*\\[{1,2}\\s*${section.replace(/\./g, "\\.")}\\s*\\]{1,2}`);
    let seen = -1;
    for (let i = from; i < lines.length; i++) {
      if (header.test(lines[i]!) && ++seen === idx) {
        from = i;
        break;
      }
    }
    if (seen < idx) return undefined;
  }
  const last = parts[parts.length - 1]!.replace(/\[\d+\]$/, "");
  const keyRe = new RegExp(`^\\s*"?${last.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}"?\\s*=`);
  for (let i = from; i < lines.length; i++) {
    if (i > from && /^\s*\[/.test(lines[i]!) && parts.length > 1) break;
    if (keyRe.test(lines[i]!)) return i + 1;
  }
  return parts.length > 1 ? from + 1 : undefined;
}

function issuePath(issue: v.BaseIssue<unknown>): string {
  return (issue.path ?? [])
    .map((p, i) => (typeof p.key === "number" ? `[${p.key}]` : `${i ? "." : ""}${String(p.key)}`))
    .join("");
}

/** Parses and validates config text; never throws for bad input, returns every problem instead. */
export function parseConfig(
  text: string,
  opts: { file?: string; env?: Record<string, string | undefined> } = {},
): { ok: true; config: Config } | { ok: false; issues: ConfigIssue[] } {
  let raw: Obj;
  try {
    raw = parseToml(text) as Obj;
  } catch (e) {
    const err = e as { message: string; line?: number };
    return { ok: false, issues: [{ key: "(toml)", message: err.message.split("\n")[0]!, line: err.line }] };
  }
  const issues: ConfigIssue[] = [];
  applyEnv(raw, opts.env ?? {}, issues);
  readSecretFiles(raw, "", issues);
  const r = v.safeParse(ConfigSchema, raw);
  if (!r.success) {
    for (const i of r.issues) {
      const key = issuePath(i) || "(root)";
      let message = i.message;
      if (i.kind === "schema" && i.type === "strict_object" && i.input !== undefined) message = `unknown key`;
      issues.push({ key, message, line: findLine(text, key) });
    }
  }
  if (r.success) issues.push(...crossCheck(r.output, text));
  if (issues.length || !r.success) return { ok: false, issues };
  // each mapping carries its effective encoding modes: its own over [debezium]
  for (const m of r.output.mappings) m.debezium = { ...r.output.debezium, ...m.debezium };
  return { ok: true, config: r.output };
}

function crossCheck(c: Config, text: string): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const add = (key: string, message: string) => out.push({ key, message, line: findLine(text, key) });
  const sources = new Set(c.postgres_sources.map((s) => s.name));
  const seen = new Set<string>();
  c.mappings.forEach((m, i) => {
    if (c.source.kind === "kafka" && !m.topic) add(`mappings[${i}].topic`, "required when source.kind = kafka");
    if (c.source.kind === "postgres") {
      if (!m.source) add(`mappings[${i}].source`, "required when source.kind = postgres");
      else if (!sources.has(m.source)) add(`mappings[${i}].source`, `no [[postgres_sources]] named ${m.source}`);
      if (!m.source_table) add(`mappings[${i}].source_table`, "required when source.kind = postgres");
      else if (!/^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/.test(m.source_table)) add(`mappings[${i}].source_table`, "must be schema.table");
    }
    const id = c.source.kind === "kafka" ? `topic ${m.topic}` : `${m.source}:${m.source_table}`;
    if (seen.has(id)) add(`mappings[${i}]`, `${id} is mapped twice`);
    seen.add(id);
  });
  return out;
}

export function loadConfig(file: string, env: Record<string, string | undefined> = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(file, [{ key: "(file)", message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }]);
  }
  const r = parseConfig(text, { file, env });
  if (!r.ok) throw new ConfigError(file, r.issues);
  return r.config;
}

/** postgres.js options from a connection section. */
export function connectionOptions(c: {
  url?: string;
  host?: string;
  port?: number;
  database?: string;
  user?: string;
  password?: string;
  connect_timeout: number;
}): { url?: string; options: Record<string, unknown> } {
  const options: Record<string, unknown> = { connect_timeout: c.connect_timeout };
  for (const k of ["host", "port", "database", "user", "password"] as const) if (c[k] !== undefined) options[k] = c[k];
  return { url: c.url, options };
}
