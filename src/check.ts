// `cdc-sink check`: one preflight per dependency — the Kafka brokers, each PostgreSQL source, the
// analytics database — each problem on one line with its fix; for Kafka mappings the decoding
// contract of every column (what the connector sends, what the column holds), with warnings.
import type { Config } from "./config.ts";
import { decodingContract } from "./decode/contract.ts";
import { errorInfo, SchemaError } from "./errors.ts";
import { KafkaConsumer, librdkafkaFeatures, librdkafkaVersion } from "./kafka/index.ts";
import { openAnalytics } from "./sink/database.ts";
import { loadTargets } from "./sink/targets.ts";
import { consumerProperties } from "./sources/kafka.ts";
import { qualify } from "./sink/schema.ts";
import { openSource, slotState, sourceProblems } from "./sources/postgres/setup.ts";

export interface Finding {
  level: "ok" | "info" | "warn" | "FAIL";
  text: string;
}

/** Configured features librdkafka was built without (a SASL mechanism, TLS, a compression codec). */
export function missingFeatures(props: Record<string, unknown>, builtIn: string[]): string[] {
  const need = new Set<string>();
  const mech = String(props["sasl.mechanisms"] ?? props["sasl.mechanism"] ?? "").toUpperCase();
  if (mech) need.add(mech === "GSSAPI" ? "sasl_gssapi" : mech === "PLAIN" ? "sasl_plain" : mech.startsWith("SCRAM") ? "sasl_scram" : mech === "OAUTHBEARER" ? "sasl_oauthbearer" : `sasl (${mech})`);
  const protocol = String(props["security.protocol"] ?? "").toLowerCase();
  if (protocol.includes("ssl")) need.add("ssl");
  if (protocol.includes("sasl")) need.add("sasl");
  const codec = String(props["compression.codec"] ?? props["compression.type"] ?? "").toLowerCase();
  if (codec && codec !== "none" && codec !== "inherit") need.add(codec);
  return [...need].filter((f) => !builtIn.includes(f));
}

async function kafkaPreflight(config: Config): Promise<Finding[]> {
  const kafka = config.kafka!;
  const out: Finding[] = [];
  for (const f of missingFeatures(kafka.properties, librdkafkaFeatures()))
    out.push({ level: "warn", text: `librdkafka ${librdkafkaVersion()} is built without ${f}, which [kafka.properties] needs` });
  const c = new KafkaConsumer({ ...consumerProperties(kafka), "socket.timeout.ms": 5000 });
  try {
    const topics = new Map((await c.listTopics(5000)).map((t) => [t.topic, t]));
    for (const m of config.mappings) {
      const t = topics.get(m.topic!);
      if (!t || t.error) out.push({ level: "FAIL", text: `topic ${m.topic} does not exist (is the Debezium connector registered? scripts/register-connectors.sh)` });
      else out.push({ level: "ok", text: `topic ${m.topic} (${t.partitions} partitions)` });
    }
  } catch (e) {
    out.push({ level: "FAIL", text: `broker ${kafka.bootstrap_servers}: ${errorInfo(e).error}` });
  } finally {
    await c.close();
  }
  return out;
}

async function pgSourcePreflight(config: Config, s: Config["postgres_sources"][number]): Promise<Finding[]> {
  const out: Finding[] = [];
  const admin = openSource(s);
  try {
    const tables = config.mappings.filter((m) => m.source === s.name).map((m) => m.source_table!);
    const problems = await sourceProblems(admin, tables);
    for (const p of problems) out.push({ level: "FAIL", text: `source ${s.name}: ${p}` });
    if (!problems.length) out.push({ level: "ok", text: `source ${s.name}: wal_level logical, replication allowed, ${tables.length} tables with a replica identity` });
    for (const line of await slotState(admin, s)) out.push({ level: "info", text: `source ${s.name}: ${line}` });
  } catch (e) {
    out.push({ level: "FAIL", text: `source ${s.name}: ${errorInfo(e).error}` });
  } finally {
    await admin.end({ timeout: 2 });
  }
  return out;
}

/** A [[postgres_sources]] entry Kafka mappings verify against: reachable, and each verify_table readable. */
async function verifySourcePreflight(config: Config, s: Config["postgres_sources"][number]): Promise<Finding[]> {
  const out: Finding[] = [];
  const admin = openSource(s);
  try {
    for (const m of config.mappings.filter((m) => m.verify_source === s.name)) {
      const table = m.verify_table ?? m.topic!.split(".").slice(-2).join(".");
      try {
        await admin.unsafe(`SELECT 1 FROM ${qualify(table)} LIMIT 0`);
        out.push({ level: "ok", text: `verify source ${s.name}: ${table} readable (for ${m.table})` });
      } catch (e) {
        out.push({ level: "FAIL", text: `verify source ${s.name}: ${table} (for ${m.table}): ${errorInfo(e).error}` });
      }
    }
  } finally {
    await admin.end({ timeout: 2 });
  }
  return out;
}

async function analyticsPreflight(config: Config): Promise<Finding[]> {
  const out: Finding[] = [];
  const sql = openAnalytics(config.postgres, 1);
  try {
    await sql`SELECT 1`;
    out.push({ level: "ok", text: "analytics database reachable" });
    try {
      for (const t of await loadTargets(sql, config.mappings)) {
        for (const col of t.mapping.columns ?? []) if (!t.columns.has(col)) out.push({ level: "FAIL", text: `${t.table.name}: mapped column ${col} does not exist` });
        out.push({ level: "ok", text: `table ${t.table.name} (key ${t.key.join(", ")}; ${t.columns.size} columns mapped)` });
        if (config.source.kind === "kafka")
          for (const c of decodingContract(t)) {
            out.push({ level: "info", text: `${t.table.name}.${c.column} ${c.sqlType} <- ${c.expects}` });
            if (c.warning) out.push({ level: "warn", text: `${t.table.name}.${c.column}: ${c.warning}` });
          }
      }
    } catch (e) {
      if (!(e instanceof SchemaError)) throw e;
      for (const p of e.problems) out.push({ level: "FAIL", text: p });
    }
  } catch (e) {
    out.push({ level: "FAIL", text: `analytics database: ${errorInfo(e).error}` });
  } finally {
    await sql.end({ timeout: 2 });
  }
  return out;
}

/** Runs every preflight; prints ok/info lines as they come and the failures last. Returns true when nothing failed. */
export async function check(config: Config, print: (line: string) => void): Promise<boolean> {
  const findings: Finding[] = [];
  if (config.source.kind === "kafka") findings.push(...(await kafkaPreflight(config)));
  // in Kafka mode a [[postgres_sources]] entry is only read by verify: no replication needed
  for (const s of config.postgres_sources) findings.push(...(await (config.source.kind === "postgres" ? pgSourcePreflight(config, s) : verifySourcePreflight(config, s))));
  findings.push(...(await analyticsPreflight(config)));
  for (const f of findings) if (f.level !== "FAIL") print(`${f.level.padEnd(4)} ${f.text}`);
  const failed = findings.filter((f) => f.level === "FAIL");
  for (const f of failed) print(`FAIL ${f.text}`);
  return failed.length === 0;
}
