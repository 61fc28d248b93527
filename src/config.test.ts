import { expect, test } from "bun:test";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { findLine, parseConfig } from "./config.ts";
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
