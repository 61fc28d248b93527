import { expect, test } from "bun:test";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { environmentKeys, findLine, parseConfig } from "./config.ts";
import { DEBEZIUM_DEFAULTS } from "./decode/values.ts";
import { tempDir } from "../test/support/cleanup.ts";

const example = readFileSync(new URL("../sink.toml", import.meta.url), "utf8");
const secretDir = tempDir("cdc-sink-secret-");
writeFileSync(join(secretDir, "password"), "s3cret\n");
const withSecret = example.replace("/mnt/analytics-credentials/password", join(secretDir, "password"));

test("the example sink.toml is valid, with defaults filled in and the secret read from its file", () => {
  const r = parseConfig(withSecret);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  expect(r.config.postgres.password).toBe("s3cret");
  expect(r.config.mappings.map((m) => m.table)).toEqual(["fact_orders", "fact_order_items", "dim_books", "fact_inventory"]);
  expect(r.config.mappings[2]!.delete_mode).toBe("soft");
  expect(r.config.mappings[3]!.truncate).toBe("ignore");
  expect(r.config.batch.max_latency_ms).toBe(50);
});

test("the PostgreSQL-mode template sink.postgres.toml is valid", () => {
  const r = parseConfig(readFileSync(new URL("../sink.postgres.toml", import.meta.url), "utf8"));
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  expect(r.config.source.kind).toBe("postgres");
  expect(r.config.postgres_sources.map((s) => s.name)).toEqual(["ecom", "inventory"]);
  expect(r.config.mappings.map((m) => `${m.source}:${m.source_table}`)).toEqual(["ecom:public.orders", "ecom:public.order_items", "ecom:public.books", "inventory:public.inventory"]);
});

test("CDC_SINK_* variables override file values, typed as TOML values", () => {
  const r = parseConfig(withSecret, { env: { CDC_SINK_KAFKA_GROUP_ID: "other", CDC_SINK_BATCH_MAX_EVENTS: "100", CDC_SINK_POSTGRES_URL: "postgres://x@y/z" } });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  expect(r.config.kafka!.group_id).toBe("other");
  expect(r.config.batch.max_events).toBe(100);
  expect(r.config.postgres.url).toBe("postgres://x@y/z");
});

test("every problem is listed, each naming its key and line", () => {
  const bad = withSecret
    .replace('delete_mode = "hard"', 'delete_mode = "sometimes"')
    .replace("max_events = 5000", "max_events = -1")
    .replace('table = "fact_inventory"', 'table = "Fact Inventory"')
    .replace("[log]", "[log]\ncolour = true");
  const r = parseConfig(bad, { env: { CDC_SINK_NOPE_X: "1" } });
  expect(r.ok).toBe(false);
  if (r.ok) return;
  const byKey = Object.fromEntries(r.issues.map((i) => [i.key, i]));
  expect(Object.keys(byKey).sort()).toEqual(["CDC_SINK_NOPE_X", "batch.max_events", "log.colour", "mappings[0].delete_mode", "mappings[3].table"]);
  const lines = bad.split("\n");
  expect(lines[byKey["mappings[0].delete_mode"]!.line! - 1]).toContain('delete_mode = "sometimes"');
  expect(lines[byKey["batch.max_events"]!.line! - 1]).toContain("max_events = -1");
  expect(lines[byKey["mappings[3].table"]!.line! - 1]).toContain('"Fact Inventory"');
  expect(byKey["mappings[0].delete_mode"]!.message).toMatch(/hard.*soft/);
});

test("a missing secret file and a missing section are reported, TOML syntax errors with their line", () => {
  const r = parseConfig(example);
  expect(r.ok).toBe(false);
  if (!r.ok) expect(r.issues[0]!.key).toBe("postgres.password_file");
  const r2 = parseConfig('[source]\nkind = "kafka"\n[postgres]\nurl = "x"\n[[mappings]]\ntopic = "t"\ntable = "t"\n');
  expect(!r2.ok && r2.issues.map((i) => i.key)).toEqual(["kafka"]);
  const r3 = parseConfig("[postgres]\nurl = \n");
  expect(!r3.ok && r3.issues[0]!.line).toBe(2);
});

test("findLine locates keys inside array tables", () => {
  const text = '[a]\nx = 1\n[[m]]\nt = 1\n[[m]]\nt = 2\nu = 3\n';
  expect(findLine(text, "m[1].u")).toBe(7);
  expect(findLine(text, "m[0].t")).toBe(4);
  expect(findLine(text, "a.x")).toBe(2);
});

test("sink.toml reads values the way the shipped connectors encode them", () => {
  const r = parseConfig(withSecret, { env: {} });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  const modes = ["time.precision.mode", "decimal.handling.mode", "binary.handling.mode", "interval.handling.mode", "unavailable.value.placeholder"];
  const dir = new URL("../connectors/", import.meta.url);
  for (const f of readdirSync(dir).filter((f) => f.endsWith(".json"))) {
    const connector = JSON.parse(readFileSync(new URL(f, dir), "utf8")).config as Record<string, string>;
    const prefix = connector["topic.prefix"]!;
    for (const m of r.config.mappings.filter((m) => m.topic!.startsWith(`${prefix}.`)))
      for (const k of modes) expect({ topic: m.topic, k, v: (m.debezium as Record<string, string>)[k] ?? DEBEZIUM_DEFAULTS[k as keyof typeof DEBEZIUM_DEFAULTS] }).toEqual({ topic: m.topic, k, v: connector[k] ?? DEBEZIUM_DEFAULTS[k as keyof typeof DEBEZIUM_DEFAULTS] });
  }
});

test("environment overrides reach every key: array entries by index, librdkafka properties, [debezium]; unknown names are reported", () => {
  const r = parseConfig(example, {
    env: {
      CDC_SINK_MAPPINGS_1_TABLE: "other_items",
      CDC_SINK_MAPPINGS_0_DEBEZIUM_DECIMAL_HANDLING_MODE: "string",
      CDC_SINK_KAFKA_PROPERTIES_FETCH_WAIT_MAX_MS: "20",
      CDC_SINK_DEBEZIUM_TIME_PRECISION_MODE: "connect",
      CDC_SINK_DEAD_LETTERS_MAX_VALUE_BYTES: "4096",
      CDC_SINK_POSTGRES_PASSWORD_FILE: join(secretDir, "password"),
    },
  });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  expect(r.config.mappings[1]!.table).toBe("other_items");
  expect(r.config.mappings[0]!.debezium!["decimal.handling.mode"]).toBe("string");
  expect(r.config.mappings[0]!.debezium!["time.precision.mode"]).toBe("connect");
  expect(r.config.kafka!.properties["fetch.wait.max.ms"]).toBe(20);
  expect(r.config.dead_letters.max_value_bytes).toBe(4096);
  expect(r.config.postgres.password).toBe("s3cret");
  const bad = parseConfig(withSecret, { env: { CDC_SINK_MAPPINGS_X_TABLE: "t", CDC_SINK_KAFKA_NOPE: "1" } });
  expect(!bad.ok && bad.issues.map((i) => i.key).sort()).toEqual(["CDC_SINK_KAFKA_NOPE", "CDC_SINK_MAPPINGS_X_TABLE"]);
  const names = environmentKeys().map(([, env]) => env);
  expect(names).toContain("CDC_SINK_MAPPINGS_N_TABLE");
  expect(names).toContain("CDC_SINK_POSTGRES_SOURCES_N_PASSWORD");
  expect(names).toContain("CDC_SINK_KAFKA_PROPERTIES_<PROPERTY>");
});

test("a value and its _file both set, and a listen address that cannot be, are errors naming the key", () => {
  const both = parseConfig(withSecret.replace("password_file =", 'password = "x"\npassword_file ='));
  expect(!both.ok && both.issues.map((i) => [i.key, i.message])).toEqual([["postgres.password_file", "both password and password_file are set: keep one"]]);
  for (const listen of ["999.1.1.1:99", "0.0.0.0:99999", "nohost", "a b:80"]) {
    const r = parseConfig(withSecret.replace('listen = "0.0.0.0:8080"', `listen = "${listen}"`));
    expect(!r.ok && r.issues.map((i) => i.key)).toEqual(["http.listen"]);
  }
  for (const listen of ["127.0.0.1:0", "[::]:8080", "localhost:9090", ":8080"]) expect(parseConfig(withSecret.replace('listen = "0.0.0.0:8080"', `listen = "${listen}"`)).ok).toBe(true);
  // offline validation without the secret files: they are not read
  expect(parseConfig(example, { readFiles: false }).ok).toBe(true);
});

test("librdkafka properties are checked offline: unknown ones and bad values name their key; command-running ones need an explicit allow", () => {
  const withProps = (props: string, extra = "") => withSecret.replace('"fetch.wait.max.ms" = 100', `"fetch.wait.max.ms" = 100\n${props}`).replace("[kafka.properties]", `${extra}\n[kafka.properties]`);
  const r = parseConfig(withProps('"fetch.wiat.max.ms" = 10\n"fetch.queue.backoff.ms" = "soon"\n"sasl.kerberos.kinit.cmd" = "touch /tmp/x"'));
  expect(!r.ok && r.issues.map((i) => [i.key, i.message.slice(0, 40)])).toEqual([
    ["kafka.properties.sasl.kerberos.kinit.cmd", "runs commands or loads code: refused unl"],
    ["kafka.properties.fetch.wiat.max.ms", "not a librdkafka property"],
    ["kafka.properties.fetch.queue.backoff.ms", 'Invalid value for configuration property'],
  ]);
  expect(parseConfig(withProps('"sasl.kerberos.kinit.cmd" = "kinit -k"', 'allow_unsafe_kafka_properties = ["sasl.kerberos.kinit.cmd"]')).ok).toBe(true);
});

test("schema_changes per mapping (ignore by default); the deprecated new_columns sets it for its source's mappings, with a warning naming the key", () => {
  const pg = readFileSync(new URL("../sink.postgres.toml", import.meta.url), "utf8");
  const plain = parseConfig(pg);
  if (!plain.ok) throw new Error(JSON.stringify(plain.issues));
  expect(plain.config.mappings.map((m) => m.schema_changes)).toEqual(["ignore", "ignore", "ignore", "ignore"]);
  expect(plain.warnings).toEqual([]);
  const old = pg.replace('name = "ecom"', 'name = "ecom"\nnew_columns = "add"').replace('source_table = "public.books"', 'source_table = "public.books"\nschema_changes = "fail"');
  const r = parseConfig(old);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  expect(r.config.mappings.map((m) => m.schema_changes)).toEqual(["add", "add", "fail", "ignore"]);
  expect(r.warnings.map((w) => [w.key, old.split("\n")[w.line! - 1]])).toEqual([["postgres_sources[0].new_columns", 'new_columns = "add"']]);
  expect(r.warnings[0]!.message).toBe('deprecated: set schema_changes = "add" in each [[mappings]] entry instead (applied to fact_orders, fact_order_items)');
  const bad = parseConfig(pg.replace('table = "fact_orders"', 'table = "fact_orders"\nschema_changes = "widen"'));
  expect(!bad.ok && bad.issues.map((i) => i.key)).toEqual(["mappings[0].schema_changes"]);
});

test("auto_provision, provision_enums and schema_changes are reached by environment overrides", () => {
  const r = parseConfig(withSecret, { env: { CDC_SINK_POSTGRES_AUTO_PROVISION: "true", CDC_SINK_POSTGRES_PROVISION_ENUMS: "type", CDC_SINK_MAPPINGS_2_SCHEMA_CHANGES: "add" } });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  expect([r.config.postgres.auto_provision, r.config.postgres.provision_enums, r.config.mappings[2]!.schema_changes, r.config.mappings[0]!.schema_changes]).toEqual([true, "type", "add", "ignore"]);
  const names = environmentKeys().map(([, env]) => env);
  expect(names).toContain("CDC_SINK_MAPPINGS_N_SCHEMA_CHANGES");
  expect(names).toContain("CDC_SINK_POSTGRES_AUTO_PROVISION");
});
