// `cdc-sink init`: the DDL each mapping's analytics table needs, derived from its source — a
// PostgreSQL source's catalog (a Kafka mapping's verify_source), or else the message schema of
// the topic's newest events (schemas.enable=true). A missing table is created with the source's
// columns and types, its primary key and the bookkeeping columns; an existing one only gains what
// it lacks (bookkeeping columns, mapped columns, a unique index on the key): nothing is dropped
// or retyped. Not copied: NOT NULL (other than the key's), defaults, checks, foreign keys — change
// events of different tables arrive in no guaranteed order, and an update may leave out
// unchanged TOASTed columns.
import type { Sql } from "postgres";
import type { Config, Mapping } from "../config.ts";
import { parseJson } from "../decode/json.ts";
import { errorInfo, SchemaError } from "../errors.ts";
import { defaultVerifyTable } from "../verify/plan.ts";
import { type ConnectField, connectSqlType } from "../schema/connect.ts";
import { mappingId, type SchemaLogEntry, writeSchemaLog } from "../sink/evolve.ts";
import { introspectTable, POSITION_COLUMNS, quoteIdent } from "../sink/schema.ts";
import type { TableInfo } from "../model.ts";
import { readCatalog, type SourceTable } from "./catalog.ts";
import { hasRowSchema, type Sampled, sampleTopic } from "./sample.ts";
import { openSource } from "../sources/postgres/setup.ts";

/** What one analytics table needs. */
export interface TablePlan {
  table: string;
  mapping: Mapping;
  /** where the columns came from */
  from?: string;
  statements: string[];
  /** what applying records in schema_log */
  log: SchemaLogEntry[];
  /** a created table's source column types, as the running sink will see them: changes are judged against these (source_columns) */
  seen: Array<[string, string]>;
  /** printed as comments above the statements */
  notes: string[];
  /** why the table cannot be provisioned (nothing of it is applied) */
  problems: string[];
}

/** A source could not be read (unreachable, refused): the table cannot be derived now; a retry may do it. */
export class SourceUnavailable extends Error {
  readonly code: string | undefined;
  constructor(
    readonly what: string,
    cause: unknown,
  ) {
    super(`${what}: ${errorInfo(cause).error}`, { cause });
    this.code = errorInfo(cause).code;
  }
}

const RESERVED = new Set(
  "all analyse analyze and any array as asc asymmetric authorization binary both case cast check collate collation column concurrently constraint create cross current_catalog current_date current_role current_schema current_time current_timestamp current_user default deferrable desc distinct do else end except false fetch for foreign freeze from full grant group having ilike in initially inner intersect into is isnull join lateral leading left like limit localtime localtimestamp natural not notnull null offset on only or order outer overlaps placing primary references returning right select session_user similar some symmetric system_user table tablesample then to trailing true union unique user using variadic verbose when where window with".split(
    " ",
  ),
);
/** An identifier as written in DDL: quoted only where it has to be. */
export const ident = (s: string) => (/^[a-z_][a-z0-9_$]*$/.test(s) && !RESERVED.has(s) ? s : quoteIdent(s));
const tableIdent = (name: string) => name.split(".").map(ident).join(".");

interface Derived {
  from: string;
  /** the types are those the running sink will compare with (a PostgreSQL source's catalog; a Kafka topic's message schema) */
  asStreamed: boolean;
  /** source column name -> SQL type for analytics */
  columns: Array<{ source: string; type: string }>;
  key: string[];
  /** statements the types need first (an enum type) */
  before: string[];
  notes: string[];
  /** source column -> its type as the source describes it */
  sourceTypes: Map<string, string>;
}

/** Opens each source connection once per run. */
export class SourceConnections {
  readonly #open = new Map<string, Sql>();
  constructor(readonly config: Config) {}
  get(name: string): Sql {
    let s = this.#open.get(name);
    if (!s) {
      const cfg = this.config.postgres_sources.find((x) => x.name === name)!;
      this.#open.set(name, (s = openSource(cfg)));
    }
    return s;
  }
  async close(): Promise<void> {
    await Promise.all([...this.#open.values()].map((s) => s.end({ timeout: 2 }).catch(() => {})));
  }
}

/** The source catalog's columns as analytics types: enums as text (or their type), domains as their base type, types analytics lacks as text. */
async function fromCatalog(config: Config, analytics: Sql, src: SourceTable, targetSchema: string, from: string): Promise<Derived> {
  const out: Derived = { from, asStreamed: config.source.kind === "postgres", columns: [], key: src.key, before: [], notes: [], sourceTypes: new Map(src.columns.map((c) => [c.name, c.sqlType])) };
  const userTypes = src.columns.filter((c) => c.userDefined && !c.enum && !c.domainBase).map((c) => c.sqlType);
  const known = new Set<string>();
  for (const t of userTypes) {
    const [r] = await analytics`SELECT to_regtype(${t}) IS NOT NULL AS known`;
    if (r?.known) known.add(t);
  }
  const enums = new Set<string>();
  for (const c of src.columns) {
    let type = c.sqlType;
    if (c.enum) {
      if (config.postgres.provision_enums === "type") {
        const name = `${ident(targetSchema)}.${ident(c.enum.name)}`;
        if (!enums.has(name)) {
          enums.add(name);
          const labels = c.enum.labels.map((l) => `'${l.replace(/'/g, "''")}'`).join(", ");
          out.before.push(`DO $$ BEGIN CREATE TYPE ${name} AS ENUM (${labels}); EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
        }
        type = `${name}${c.enum.array ? "[]" : ""}`;
      } else {
        type = c.enum.array ? "text[]" : "text";
        out.notes.push(`${c.name}: enum ${c.enum.schema}.${c.enum.name} stored as text ([postgres] provision_enums = "type" creates the enum type instead)`);
      }
    } else if (c.domainBase) {
      type = c.domainBase;
      out.notes.push(`${c.name}: domain ${c.sqlType} stored as its base type ${type}`);
    } else if (c.userDefined && !known.has(c.sqlType)) {
      type = c.sqlType.endsWith("[]") ? "text[]" : "text";
      out.notes.push(`${c.name}: type ${c.sqlType} does not exist in the analytics database: stored as text`);
    }
    out.columns.push({ source: c.name, type });
  }
  return out;
}

/** The newest event's schema as analytics types; the key from the message key. */
function fromMessageSchema(topic: string, s: Sampled): Derived | string {
  if (!s.withSchema) {
    if (!s.records) return `topic ${topic} has no events yet: nothing to derive the table from`;
    return `the events of topic ${topic} carry no schema (the connector runs with value.converter.schemas.enable=false)`;
  }
  const out: Derived = { from: `the message schema of topic ${topic}`, asStreamed: true, columns: [], key: [], before: [], notes: [], sourceTypes: new Map() };
  const fields = (((s.withSchema.value.schema as { fields: ConnectField[] }).fields.find((f) => f.field === "after")!.fields ?? []) as ConnectField[]);
  for (const f of fields) {
    const t = connectSqlType(f);
    if (!t) {
      out.notes.push(`${f.field}: Kafka Connect type ${f.type}${f.name ? ` (${f.name})` : ""} has no PostgreSQL equivalent here: left out`);
      continue;
    }
    if (t.loose) out.notes.push(`${f.field}: ${t.sqlType} (the schema does not tell the source's length or precision; verify_source would)`);
    out.columns.push({ source: f.field!, type: t.sqlType });
    out.sourceTypes.set(f.field!, t.sqlType);
  }
  if (s.withSchema.key !== null) {
    try {
      const k = parseJson(s.withSchema.key);
      const payload = k && typeof k === "object" && "payload" in (k as object) && "schema" in (k as object) ? (k as { payload: unknown }).payload : k;
      if (payload && typeof payload === "object" && !Array.isArray(payload)) out.key = Object.keys(payload);
    } catch {
      out.notes.push("the message key is not JSON: set key = [...] in the mapping");
    }
  }
  return out;
}

/** Where a mapping's columns come from; a string says why they cannot be derived. */
async function derive(config: Config, m: Mapping, analytics: Sql, sources: SourceConnections, targetSchema: string, opts: PlanOptions): Promise<Derived | string> {
  const catalog = async (sourceName: string, table: string, what: string) => {
    let src: SourceTable | undefined;
    try {
      src = await readCatalog(sources.get(sourceName), table);
    } catch (e) {
      throw new SourceUnavailable(`source ${sourceName}`, e);
    }
    if (!src) return `source ${sourceName} has no table ${table} (or the role cannot see it)`;
    return fromCatalog(config, analytics, src, targetSchema, what);
  };
  if (config.source.kind === "postgres") return catalog(m.source!, m.source_table!, `the catalog of ${m.source}:${m.source_table}`);
  if (m.verify_source) {
    const table = m.verify_table ?? defaultVerifyTable(m.topic!);
    return catalog(m.verify_source, table, `the catalog of ${m.verify_source}:${table} (verify_source)`);
  }
  let sampled: Sampled;
  try {
    sampled = await (opts.sample ?? sampleTopic)(config.kafka!, m.topic!, { timeoutMs: opts.sampleTimeoutMs });
  } catch (e) {
    throw new SourceUnavailable(`topic ${m.topic}`, e);
  }
  const d = fromMessageSchema(m.topic!, sampled);
  if (typeof d !== "string") return d;
  return `${d}; set verify_source (a [[postgres_sources]] entry, read-only) and verify_table on the mapping so that init reads the source table's catalog, or create ${m.table} by hand`;
}

export interface PlanOptions {
  /** how long to read a topic for an event with a schema (20 s) */
  sampleTimeoutMs?: number;
  /** reads a topic's newest records (tests may pass their own) */
  sample?: typeof sampleTopic;
}

const bookkeepingOf = (m: Mapping) => [
  ...POSITION_COLUMNS.map((c) => ({ name: c as string, type: c === "_cdc_synced_at" ? "timestamptz" : "numeric(20,0)" })),
  ...(m.delete_mode === "soft" ? [{ name: m.soft_delete_column, type: "timestamptz" }] : []),
];

/** Mapped source columns -> analytics columns: the `columns` filter (key columns always), `rename`. */
function mapColumns(m: Mapping, d: Derived): { columns: Array<{ name: string; type: string }>; key: string[] } {
  const key = m.key ?? d.key.map((k) => m.rename[k] ?? k);
  const keep = (src: string) => !m.columns || m.columns.includes(src) || key.includes(m.rename[src] ?? src);
  return { columns: d.columns.filter((c) => keep(c.source)).map((c) => ({ name: m.rename[c.source] ?? c.source, type: c.type })), key };
}

/** The plans of every mapped table that needs something; tables that are complete are left out. */
export async function planProvision(config: Config, analytics: Sql, opts: PlanOptions = {}): Promise<TablePlan[]> {
  const sources = new SourceConnections(config);
  const plans: TablePlan[] = [];
  const seen = new Set<string>();
  try {
    for (const m of config.mappings) {
      if (seen.has(m.table)) continue;
      seen.add(m.table);
      let info: TableInfo | undefined;
      try {
        info = await introspectTable(analytics, m.table);
      } catch (e) {
        if (!(e instanceof SchemaError)) throw e;
      }
      const plan = info ? await planExisting(config, m, info, analytics, sources, opts) : await planCreate(config, m, analytics, sources, opts);
      if (plan.statements.length || plan.problems.length) plans.push(plan);
    }
  } finally {
    await sources.close();
  }
  return plans;
}

const schemaOf = (table: string) => (table.includes(".") ? table.split(".")[0]! : "public");

async function planCreate(config: Config, m: Mapping, analytics: Sql, sources: SourceConnections, opts: PlanOptions): Promise<TablePlan> {
  const plan: TablePlan = { table: m.table, mapping: m, statements: [], log: [], notes: [], problems: [], seen: [] };
  const d = await derive(config, m, analytics, sources, schemaOf(m.table), opts);
  if (typeof d === "string") {
    plan.problems.push(`${m.table}: does not exist and cannot be derived: ${d}`);
    return plan;
  }
  plan.from = d.from;
  plan.notes.push(...d.notes);
  const { columns, key } = mapColumns(m, d);
  if (!key.length) plan.problems.push(`${m.table}: the source has no primary key (nor replica identity index) to make the table's key: set key = [...] in the mapping`);
  for (const k of key) if (!columns.some((c) => c.name === k)) plan.problems.push(`${m.table}: key column ${k} is not a source column`);
  if (plan.problems.length) return plan;
  if (m.table.includes(".")) {
    const [r] = await analytics`SELECT to_regnamespace(${schemaOf(m.table)}) IS NOT NULL AS known`;
    if (!r?.known) plan.statements.push(`CREATE SCHEMA IF NOT EXISTS ${ident(schemaOf(m.table))}`);
  }
  plan.statements.push(...d.before);
  const names = new Set(columns.map((c) => c.name));
  const all = [...columns, ...bookkeepingOf(m).filter((b) => !names.has(b.name))];
  const width = Math.max(...all.map((c) => ident(c.name).length));
  const lines = all.map((c) => `  ${ident(c.name).padEnd(width)} ${c.type}`);
  lines.push(`  PRIMARY KEY (${key.map(ident).join(", ")})`);
  const statement = `CREATE TABLE IF NOT EXISTS ${tableIdent(m.table)} (\n${lines.join(",\n")}\n)`;
  plan.statements.push(statement);
  plan.log.push({ tbl: m.table, mapping: mappingId(m), col: null, change: "create_table", action: "created", statement, detail: `from ${d.from}` });
  if (d.asStreamed) for (const [source, type] of d.sourceTypes) if (names.has(m.rename[source] ?? source)) plan.seen.push([m.rename[source] ?? source, type]);
  return plan;
}

async function planExisting(config: Config, m: Mapping, info: TableInfo, analytics: Sql, sources: SourceConnections, opts: PlanOptions): Promise<TablePlan> {
  const plan: TablePlan = { table: m.table, mapping: m, statements: [], log: [], notes: [], problems: [], seen: [] };
  const id = mappingId(m);
  const add: Array<{ name: string; type: string; change: "bookkeeping" | "new_column" }> = [];
  for (const b of bookkeepingOf(m)) if (!info.columns.has(b.name)) add.push({ ...b, change: "bookkeeping" });
  const missing = (m.columns ?? []).filter((c) => !info.columns.has(m.rename[c] ?? c));
  if (missing.length) {
    const d = await derive(config, m, analytics, sources, schemaOf(m.table), opts);
    if (typeof d === "string") plan.problems.push(`${m.table}: mapped column(s) ${missing.join(", ")} do not exist and cannot be derived: ${d}`);
    else {
      plan.from = d.from;
      plan.statements.push(...d.before);
      for (const c of missing) {
        const s = d.columns.find((x) => x.source === c);
        if (!s) plan.problems.push(`${m.table}: mapped column ${c} is not a column of ${d.from}`);
        else add.push({ name: m.rename[c] ?? c, type: s.type, change: "new_column" });
      }
    }
  }
  if (add.length) {
    const statement = `ALTER TABLE ${tableIdent(m.table)}\n${add.map((c) => `  ADD COLUMN IF NOT EXISTS ${ident(c.name)} ${c.type}`).join(",\n")}`;
    plan.statements.push(statement);
    for (const c of add) plan.log.push({ tbl: m.table, mapping: id, col: c.name, change: c.change, action: "added", newType: c.type, statement });
  }
  const key = m.key ?? info.primaryKey;
  if (!key.length) plan.problems.push(`${m.table}: no primary key and no key configured: set key = [...] in the mapping`);
  const absent = key.filter((k) => !info.columns.has(k));
  if (absent.length) plan.problems.push(`${m.table}: key column(s) ${absent.join(", ")} do not exist (init adds no key column to a table with rows)`);
  else if (key.length && !info.uniqueKeys.some((u) => [...u].sort().join(",") === [...key].sort().join(","))) {
    const statement = `CREATE UNIQUE INDEX IF NOT EXISTS ${ident(`${m.table.split(".").pop()}_cdc_key`)} ON ${tableIdent(m.table)} (${key.map(ident).join(", ")})`;
    plan.statements.push(statement);
    plan.log.push({ tbl: m.table, mapping: id, col: null, change: "key_index", action: "created", statement });
  }
  if (plan.problems.length) plan.statements = [];
  return plan;
}

/** Applies the plans that can be applied, each table in its own transaction (serialized with schema changes of the same table). */
export async function applyProvision(sql: Sql, stateSchema: string, plans: TablePlan[]): Promise<void> {
  for (const p of plans) {
    if (p.problems.length || !p.statements.length) continue;
    await sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(hashtext(${`cdc_sink_evolve:${p.table}`}))`;
      for (const s of p.statements) await tx.unsafe(s);
      await writeSchemaLog(tx, stateSchema, p.log);
      if (p.seen.length)
        await tx.unsafe(
          `INSERT INTO ${quoteIdent(stateSchema)}.source_columns (tbl, mapping, col, source_type) SELECT $1, $2, c, s FROM unnest($3::text[], $4::text[]) AS u(c, s) ON CONFLICT DO NOTHING`,
          [p.table, mappingId(p.mapping), p.seen.map(([c]) => c), p.seen.map(([, t]) => t)] as never[],
        );
    });
  }
}

/** The plans as SQL: comments saying where each table comes from and what to know, then its statements. */
export function formatPlans(plans: TablePlan[]): string[] {
  const out: string[] = [];
  for (const p of plans) {
    out.push(`-- ${p.table} <- ${p.mapping.topic ?? `${p.mapping.source}:${p.mapping.source_table}`}${p.from ? `: columns from ${p.from}` : ""}`);
    for (const n of p.notes) out.push(`--   ${n}`);
    for (const problem of p.problems) out.push(`--   cannot: ${problem}`);
    for (const s of p.statements) out.push(`${s};`);
    out.push("");
  }
  return out;
}
