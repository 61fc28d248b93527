// sink.toml: parsed with smol-toml, overridden by CDC_SINK_* variables, secrets read from files,
// validated with valibot. Problems are returned as data, each naming its key (and line).
import { readFileSync } from "node:fs";
import { parse as parseToml } from "smol-toml";
import * as v from "valibot";
import { ConfigError } from "./errors.ts";
import { propertyProblems } from "./kafka/index.ts";
import { type Config, ConfigSchema } from "./config-schema.ts";

export { ConfigSchema, parseDuration, type Config, type DebeziumModes, type Mapping, type PgSourceConfig } from "./config-schema.ts";

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
