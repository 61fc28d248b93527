// sink.toml: parsed with smol-toml, overridden by CDC_SINK_* variables, secrets read from files,
// validated with valibot. Problems are returned as data, each naming its key (and line).
import { readFileSync } from "node:fs";
import { parse as parseToml } from "smol-toml";
import * as v from "valibot";
import { ConfigError } from "./errors.ts";
import { propertyProblems } from "./kafka/index.ts";

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
  /** properties that run commands or load code (sasl.kerberos.kinit.cmd, ssl.engine.location, plugin.library.paths, ssl.providers) are refused unless named here */
  allow_unsafe_kafka_properties: v.optional(v.array(v.string()), []),
});

/** host:port to listen on: an IPv4 address, [IPv6] or a host name, and a port 0-65535 (0: any free one). */
const ListenSchema = v.pipe(
  v.string(),
  v.check((s) => {
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(s);
    if (!m || Number(m[3]) > 65535) return false;
    const host = m[1] ?? m[2]!;
    if (/^[\d.]+$/.test(host)) return host.split(".").length === 4 && host.split(".").every((o) => /^\d{1,3}$/.test(o) && Number(o) <= 255);
    return m[1] !== undefined || /^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?$/.test(host) || host === "";
  }, "must be host:port with a valid address and a port from 0 to 65535 (e.g. 0.0.0.0:8080, [::]:8080)"),
);

/** A PostgreSQL connection: url, or parts; password from password_file. */
const ConnectionEntries = {
  url: v.optional(v.string()),
  host: v.optional(v.string()),
  port: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535))),
  database: v.optional(v.string()),
  user: v.optional(v.string()),
  password: v.optional(v.string()),
  /** connect timeout in seconds */
  connect_timeout: v.optional(v.pipe(v.number(), v.minValue(0.1)), 3),
};
const needsUrlOrHost = <T extends { url?: string; host?: string }>() => v.check<T, string>((c) => Boolean(c.url || c.host), "needs url or host");

/** The analytics database the sink writes to. */
const PostgresSchema = v.pipe(
  v.strictObject({
    ...ConnectionEntries,
    /** schema for the sink's own tables (checkpoints, dead letters, tombstones) */
    state_schema: v.optional(v.pipe(v.string(), v.regex(/^[a-z_][a-z0-9_]*$/, "must be a lower-case SQL identifier")), "cdc_sink"),
    /** at start, create missing analytics tables and bookkeeping columns from the source (cdc-sink init --apply) */
    auto_provision: v.optional(v.boolean(), false),
    /** how init creates a column of an enum type: as text, or with the enum type created in analytics */
    provision_enums: v.optional(v.picklist(["text", "type"]), "text"),
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
    /** connections reading each table's snapshot in parallel page ranges (tables over 64 MiB) */
    snapshot_parallelism: positiveInt(2),
    /** deprecated: each mapping's schema_changes (this sets it for the source's mappings that do not) */
    new_columns: v.optional(v.picklist(["ignore", "add"])),
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
  /** a source column added or retyped: "add" changes the table where safe (new columns, widenings) and stops the mapping otherwise; "ignore" never changes it; "fail" stops the mapping on any change the table would need */
  schema_changes: v.optional(v.picklist(["add", "ignore", "fail"]), "ignore"),
  /** this topic's connector encodes differently from [debezium] */
  debezium: v.optional(DebeziumSchema),
  /** flush once this many events of this mapping are pending */
  batch_size: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  /** flush at most this long after this mapping's first pending event */
  batch_latency_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
  /** Kafka mappings: the [[postgres_sources]] entry verify and repair read the source table from (read-only; no slot) */
  verify_source: v.optional(v.string()),
  /** Kafka mappings: the source table as schema.table (default: the last two parts of the topic) */
  verify_table: v.optional(v.pipe(v.string(), v.regex(/^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/, "must be schema.table"))),
});

/** "90s", "15m", "6h", "1d" -> milliseconds. */
export function parseDuration(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(s.trim());
  if (!m) return undefined;
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "ms" | "s" | "m" | "h" | "d"];
}
const Duration = v.pipe(v.string(), v.check((s) => parseDuration(s) !== undefined, 'must be a duration such as "90s", "15m", "6h", "1d"'));

/** Background verification by the daemon. */
const VerifySchema = v.strictObject({
  /** run verify this often (e.g. "6h"); unset: never in the background */
  interval: v.optional(Duration),
  /** rows read per second from each side, at most */
  rows_per_second: positiveInt(50_000),
  /** keys per hashed chunk */
  chunk_rows: positiveInt(10_000),
  /** mend the differences found (position-guarded); otherwise only report them */
  repair: v.optional(v.boolean(), false),
  /** how long a differing key may take to catch up before it is reported (Kafka mappings: no WAL position to wait for) */
  settle: v.optional(Duration, "10s"),
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
    http: v.optional(v.strictObject({ listen: v.optional(ListenSchema, "0.0.0.0:8080"), enabled: v.optional(v.boolean(), true) }), {
      listen: "0.0.0.0:8080",
      enabled: true,
    }),
    log: v.optional(v.strictObject({ level: v.optional(v.picklist(["debug", "info", "warn", "error"]), "info") }), { level: "info" }),
    debezium: v.optional(DebeziumSchema, {}),
    /** dead letters keep a record's bytes up to this size; beyond it: size, SHA-256 and the first 1 KiB */
    dead_letters: v.optional(v.strictObject({ max_value_bytes: positiveInt(1 << 20) }), { max_value_bytes: 1 << 20 }),
    verify: v.optional(VerifySchema, { rows_per_second: 50_000, chunk_rows: 10_000, repair: false, settle: "10s" }),
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
/** what a x_file value reads as when files are not read (offline validation) */
const FILE_PLACEHOLDER = "(from ";

type SchemaNode = { type: string; entries?: Record<string, SchemaNode>; wrapped?: SchemaNode; pipe?: SchemaNode[]; item?: SchemaNode; key?: SchemaNode; value?: SchemaNode };

/** The object, array or record schema under optional() and pipe() wrappers. */
function shape(node: SchemaNode): SchemaNode {
  if (node.type === "optional" && node.wrapped) return shape(node.wrapped);
  if (node.pipe && node.pipe[0] !== node) return shape(node.pipe[0]!);
  return node;
}

/** A key's environment spelling: upper case, dots and dashes as underscores. */
const envName = (key: string) => key.toUpperCase().replace(/[.-]/g, "_");

/**
 * Every overridable key, as [path, environment variable]: sections and their keys, array entries
 * by index (shown as `0`), record keys (librdkafka properties) with dots as underscores.
 */
export function environmentKeys(): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const walk = (node: SchemaNode, path: string, env: string) => {
    const n = shape(node);
    if (n.type === "array" && n.item) return walk(n.item, `${path}[N]`, `${env}_N`);
    if (n.type === "record") return void out.push([`${path}.<property>`, `${env}_<PROPERTY>`]);
    if (!n.entries) return void out.push([path, env]);
    for (const [k, child] of Object.entries(n.entries)) walk(child, path ? `${path}.${k}` : k, `${env}_${envName(k)}`);
  };
  walk(ConfigSchema as unknown as SchemaNode, "", "CDC_SINK");
  return out;
}

/**
 * CDC_SINK_<SECTION>_<KEY>=value sets any key: CDC_SINK_KAFKA_GROUP_ID, CDC_SINK_MAPPINGS_0_TABLE,
 * CDC_SINK_POSTGRES_SOURCES_1_PASSWORD_FILE, CDC_SINK_KAFKA_PROPERTIES_FETCH_WAIT_MAX_MS (a
 * property's dots as underscores), CDC_SINK_DEBEZIUM_DECIMAL_HANDLING_MODE. The name is matched
 * against the schema, so keys with underscores need no escaping. Values are read as TOML values
 * when they parse as one, else as strings.
 */
function applyEnv(raw: Obj, env: Record<string, string | undefined>, issues: ConfigIssue[]): void {
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith("CDC_SINK_") || value === undefined || name === "CDC_SINK_CONFIG" || name === "CDC_SINK_FAILPOINTS") continue;
    let parsed: unknown = value;
    try {
      parsed = (parseToml(`v = ${value}`) as Obj).v;
    } catch {
      /* a plain string */
    }
    if (!setByEnv(raw, ConfigSchema as unknown as SchemaNode, name.slice(9).split("_"), parsed))
      issues.push({ key: name, message: "unknown environment override (cdc-sink --help lists them)" });
  }
}

function setByEnv(target: Obj | unknown[], node: SchemaNode, tokens: string[], value: unknown): boolean {
  const n = shape(node);
  if (n.type === "array" && n.item) {
    const index = Number(tokens[0]);
    if (!/^\d+$/.test(tokens[0] ?? "") || tokens.length < 2) return false;
    const arr = target as unknown[];
    return setByEnv((arr[index] ??= {}) as Obj, n.item, tokens.slice(1), value);
  }
  const o = target as Obj;
  if (n.type === "record") {
    // librdkafka property names are dotted lower case
    if (!tokens.length) return false;
    o[tokens.join(".").toLowerCase()] = value;
    return true;
  }
  if (!n.entries) return false;
  // the longest entry whose spelling matches the leading tokens
  for (let take = tokens.length; take > 0; take--) {
    const spelled = tokens.slice(0, take).join("_");
    const key = Object.keys(n.entries).find((k) => envName(k) === spelled);
    if (!key) continue;
    const child = shape(n.entries[key]!);
    const leaf = !child.entries && child.type !== "array" && child.type !== "record";
    if (take === tokens.length) {
      if (!leaf) return false;
      o[key] = value;
      return true;
    }
    // x_file: the value comes from that file
    if (leaf && take === tokens.length - 1 && tokens[take] === "FILE") {
      o[`${key}_file`] = value;
      return true;
    }
    const container = child.type === "array" ? ((o[key] as unknown[] | undefined) ??= []) : ((o[key] as Obj | undefined) ??= {});
    if (setByEnv(container, n.entries[key]!, tokens.slice(take), value)) return true;
  }
  return false;
}

/**
 * Replaces every `x_file = "/path"` by `x = <file contents>` (Kubernetes Secret mounts). With
 * `read` false (offline validation without the secrets) the value stands in as a placeholder.
 */
function readSecretFiles(node: unknown, path: string, issues: ConfigIssue[], read: boolean): void {
  if (Array.isArray(node)) return node.forEach((n, i) => readSecretFiles(n, `${path}[${i}]`, issues, read));
  if (!node || typeof node !== "object") return;
  const o = node as Obj;
  const load = (file: string, key: string): string | undefined => {
    if (!read) return `${FILE_PLACEHOLDER}${file})`;
    try {
      return readFileSync(file, "utf8").replace(/\r?\n$/, "");
    } catch (e) {
      issues.push({ key, message: `cannot read secret file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` });
    }
  };
  for (const k of Object.keys(o)) {
    const p = path ? `${path}.${k}` : k;
    if (k.endsWith("_file") && typeof o[k] === "string") {
      const target = k.slice(0, -5);
      if (o[target] !== undefined) issues.push({ key: p, message: `both ${target} and ${k} are set: keep one` });
      else o[target] = load(o[k] as string, p);
      delete o[k];
    } else if (k === "properties_files" && o[k] && typeof o[k] === "object") {
      const props = ((o.properties as Obj | undefined) ??= {}) as Obj;
      for (const [prop, file] of Object.entries(o[k] as Obj)) {
        if (props[prop] !== undefined) issues.push({ key: `${p}.${prop}`, message: `property ${prop} is set in properties and in properties_files: keep one` });
        else props[prop] = load(String(file), `${p}.${prop}`);
      }
      delete o[k];
    } else {
      readSecretFiles(o[k], p, issues, read);
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
  opts: { file?: string; env?: Record<string, string | undefined>; readFiles?: boolean } = {},
): { ok: true; config: Config; warnings: ConfigIssue[] } | { ok: false; issues: ConfigIssue[] } {
  let raw: Obj;
  try {
    raw = parseToml(text) as Obj;
  } catch (e) {
    const err = e as { message: string; line?: number };
    return { ok: false, issues: [{ key: "(toml)", message: err.message.split("\n")[0]!, line: err.line }] };
  }
  const issues: ConfigIssue[] = [];
  applyEnv(raw, opts.env ?? {}, issues);
  readSecretFiles(raw, "", issues, opts.readFiles ?? true);
  const warnings = deprecations(raw, text);
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
  return { ok: true, config: r.output, warnings };
}

/**
 * Deprecated keys, mapped onto their replacements before validation: [[postgres_sources]]
 * new_columns sets schema_changes of that source's mappings that do not set it.
 */
function deprecations(raw: Obj, text: string): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const entries = (k: string) => (Array.isArray(raw[k]) ? (raw[k] as unknown[]).filter((x): x is Obj => !!x && typeof x === "object") : []);
  const mappings = entries("mappings");
  (Array.isArray(raw.postgres_sources) ? (raw.postgres_sources as Obj[]) : []).forEach((s, i) => {
    const policy = s && typeof s === "object" ? s.new_columns : undefined;
    if (policy !== "ignore" && policy !== "add") return;
    const applied: string[] = [];
    for (const m of mappings)
      if (m.source === s.name && m.schema_changes === undefined) {
        m.schema_changes = policy;
        applied.push(String(m.table));
      }
    const key = `postgres_sources[${i}].new_columns`;
    out.push({ key, line: findLine(text, key), message: `deprecated: set schema_changes = "${policy}" in each [[mappings]] entry instead (applied to ${applied.join(", ") || "no mapping"})` });
  });
  return out;
}

function crossCheck(c: Config, text: string): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const add = (key: string, message: string) => out.push({ key, message, line: findLine(text, key) });
  if (c.kafka) {
    // what librdkafka would refuse at start, found offline (a value read from a file is checked only when read)
    const props = Object.fromEntries(Object.entries(c.kafka.properties).filter(([, v]) => !(typeof v === "string" && v.startsWith(FILE_PLACEHOLDER))));
    for (const [prop, problem] of propertyProblems(props, c.kafka.allow_unsafe_kafka_properties)) add(`kafka.properties.${prop}`, problem);
  }
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
    if (m.verify_source !== undefined && !sources.has(m.verify_source)) add(`mappings[${i}].verify_source`, `no [[postgres_sources]] named ${m.verify_source}`);
    if (m.verify_table !== undefined && c.source.kind !== "kafka") add(`mappings[${i}].verify_table`, "only for Kafka mappings (a PostgreSQL mapping verifies its source_table)");
    const id = c.source.kind === "kafka" ? `topic ${m.topic}` : `${m.source}:${m.source_table}`;
    if (seen.has(id)) add(`mappings[${i}]`, `${id} is mapped twice`);
    seen.add(id);
  });
  return out;
}

export function loadConfig(file: string, env: Record<string, string | undefined> = process.env, opts: { readFiles?: boolean; warnings?: ConfigIssue[] } = {}): Config {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(file, [{ key: "(file)", message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }]);
  }
  const r = parseConfig(text, { file, env, readFiles: opts.readFiles });
  if (!r.ok) throw new ConfigError(file, r.issues);
  opts.warnings?.push(...r.warnings);
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
