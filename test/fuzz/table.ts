// The recorded fixtures' `fidelity` table (test/fixtures/debezium/source.json) as the decoder sees
// it once introspected, and Targets over it for each recorded encoding mode: used by the mutator
// (which column has which type) and by the property tests (decode without a database).
import { readFileSync } from "node:fs";
import { parseConfig, type Mapping } from "../../src/config.ts";
import type { Column, TableInfo, Target } from "../../src/model.ts";
import { resolveTarget } from "../../src/sink/targets.ts";

export const FIXTURES = new URL("../fixtures/debezium/", import.meta.url).pathname;

export interface SourceColumn {
  name: string;
  /** format_type() text as recorded, e.g. numeric(12,2), time(3) without time zone */
  type: string;
  not_null: boolean;
}

export const SOURCE = JSON.parse(readFileSync(`${FIXTURES}source.json`, "utf8")) as { ddl: string; columns: SourceColumn[] };

const BASE: Record<string, string> = {
  smallint: "int2",
  integer: "int4",
  bigint: "int8",
  real: "float4",
  "double precision": "float8",
  numeric: "numeric",
  money: "money",
  boolean: "bool",
  text: "text",
  "character varying": "varchar",
  character: "bpchar",
  uuid: "uuid",
  json: "json",
  jsonb: "jsonb",
  bytea: "bytea",
  mood: "mood",
  date: "date",
  "time without time zone": "time",
  "time with time zone": "timetz",
  "timestamp without time zone": "timestamp",
  "timestamp with time zone": "timestamptz",
  interval: "interval",
};

/** A recorded column type as the introspection would read it (base type, array flag, precision, scale). */
export function columnOf(c: SourceColumn): Column {
  let t = c.type;
  const isArray = t.endsWith("[]");
  if (isArray) t = t.slice(0, -2);
  let precision: number | null = null;
  let scale: number | null = null;
  const m = /^([a-z ]+?)\((\d+)(?:,(\d+))?\)(.*)$/.exec(t);
  if (m) {
    t = `${m[1]}${m[4]}`;
    precision = Number(m[2]);
    if (m[3] !== undefined) scale = Number(m[3]);
    else if (m[1] === "numeric") scale = 0;
  }
  const type = BASE[t];
  if (!type) throw new Error(`unknown column type ${c.type}`);
  return { name: c.name, type, isArray, precision, scale, sqlType: c.type, castType: c.type.replace(/\(.*?\)/, ""), notNull: c.not_null, hasDefault: /^c_toast_arr|c_upd$/.test(c.name) };
}

/** The fidelity table (plus the bookkeeping columns) named `name`. */
export function fidelityTable(name = "fidelity"): TableInfo {
  const columns = new Map<string, Column>();
  for (const c of SOURCE.columns) columns.set(c.name, columnOf(c));
  for (const b of ["_cdc_commit_lsn", "_cdc_lsn"]) columns.set(b, { name: b, type: "numeric", isArray: false, precision: 20, scale: 0, sqlType: "numeric(20,0)", castType: "numeric", notNull: false, hasDefault: false });
  columns.set("_cdc_synced_at", { name: "_cdc_synced_at", type: "timestamptz", isArray: false, precision: null, scale: null, sqlType: "timestamp with time zone", castType: "timestamp with time zone", notNull: false, hasDefault: false });
  return { name, ident: `"${name}"`, columns, primaryKey: ["id"], uniqueKeys: [["id"]] };
}

/** A Target over the fidelity table for a topic whose connector used these modes (as in manifest.json). */
export function fidelityTarget(topic: string, modes: Record<string, string>, table = "fidelity", extra = ""): Target {
  const lines = Object.entries(modes).map(([k, v]) => `"${k}" = "${v}"`);
  const r = parseConfig(`
[kafka]
bootstrap_servers = "127.0.0.1:1"
group_id = "props"
[postgres]
url = "postgres://x@127.0.0.1:1/x"
[[mappings]]
topic = "${topic}"
table = "${table}"
${extra}
[mappings.debezium]
${lines.join("\n")}
`);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return resolveTarget(r.config.mappings[0] as Mapping, fidelityTable(table));
}
