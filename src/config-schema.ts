// sink.toml's shape: every section and key with its default, as valibot schemas; the types the
// rest of the code reads. Parsing, environment overrides and secret files: config.ts.
import * as v from "valibot";

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
