// Records real Debezium output for the fidelity work (issue 11): a source table `fidelity` with every
// column type cdc-sink decodes, changed step by step (snapshot, inserts, updates that leave TOASTed
// columns alone, a primary-key change, a delete, a truncate, a logical-decoding message), captured
// by Debezium in every encoding mode cdc-sink supports and in both JsonConverter forms. Every record
// is written exactly as consumed from Kafka.
//
//   bun scripts/record-fixtures.ts             record into test/fixtures/debezium/
//   bun scripts/record-fixtures.ts --check     record into a temporary folder and compare with the
//                                              committed fixtures, ignoring what legitimately varies
//                                              (ts_ms/ts_us/ts_ns, lsn, txId, xmin, sequence, the
//                                              Debezium run id header); exit 1 on any difference
//   --out DIR          record there instead
//   --stack-dir D      use the running stack in D (scripts/stack.sh up --dir D) instead of starting a
//                      throwaway one; its fidelity databases, slots and topics are replaced
//   --keep             leave the throwaway stack running (prints its folder)
//   --compare DIR      record nothing: compare the recording in DIR with the committed fixtures
//
// Output (see README.md there): <mode>-<form>.jsonl[.gz] per connector, source.json (the source rows
// as PostgreSQL text after every step), manifest.json (which connector config made which file).
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import postgres from "postgres";

const ROOT = new URL("../", import.meta.url).pathname;
const FIXTURES = join(ROOT, "test/fixtures/debezium");

// ---------------------------------------------------------------------------------------------
// The encoding modes: every value of every mode appears at least once; each connector config runs
// in both JsonConverter forms. Mode names are the fixture file names.
interface Mode {
  name: string;
  db: string;
  config: Record<string, string>;
}
export const MODES: Mode[] = [
  {
    name: "adaptive-precise-bytes-numeric",
    db: "fid_a",
    config: { "time.precision.mode": "adaptive", "decimal.handling.mode": "precise", "binary.handling.mode": "bytes", "interval.handling.mode": "numeric" },
  },
  {
    name: "adaptivemicros-double-hex-string",
    db: "fid_b",
    config: { "time.precision.mode": "adaptive_time_microseconds", "decimal.handling.mode": "double", "binary.handling.mode": "hex", "interval.handling.mode": "string" },
  },
  {
    name: "connect-string-base64urlsafe-numeric",
    db: "fid_c",
    config: { "time.precision.mode": "connect", "decimal.handling.mode": "string", "binary.handling.mode": "base64-url-safe", "interval.handling.mode": "numeric" },
  },
  {
    name: "adaptive-double-base64-string-placeholder",
    db: "fid_d",
    config: {
      "time.precision.mode": "adaptive",
      "decimal.handling.mode": "double",
      "binary.handling.mode": "base64",
      "interval.handling.mode": "string",
      "unavailable.value.placeholder": "__unchanged_toast__",
    },
  },
];
const FORMS = [
  { name: "schemaless", schemas: "false" },
  { name: "schema", schemas: "true" },
] as const;

// ---------------------------------------------------------------------------------------------
// The source table and its steps. Large values are generated in SQL, deterministically: md5 hex is
// random to a compressor, and the columns are STORAGE EXTERNAL, so the values are TOASTed out of
// line, uncompressed.
const big = {
  text: (seed: string, n = 400) => `(SELECT string_agg(md5('${seed}' || i), '') FROM generate_series(1, ${n}) i)`,
  bytea: (seed: string, n = 320) => `(SELECT decode(string_agg(md5('${seed}' || i), ''), 'hex') FROM generate_series(1, ${n}) i)`,
  jsonb: (seed: string, n = 200) => `(SELECT jsonb_build_object('seed', '${seed}', 'items', jsonb_agg(jsonb_build_object('i', i, 'h', md5('${seed}' || i)))) FROM generate_series(1, ${n}) i)`,
  array: (seed: string, n = 40) => `(SELECT array_agg(repeat(md5('${seed}' || i), 8) ORDER BY i) FROM generate_series(1, ${n}) i)`,
};

export const DDL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'very happy');
CREATE TABLE fidelity (
  id              integer PRIMARY KEY,
  c_smallint      smallint,
  c_int           integer,
  c_bigint        bigint,
  c_real          real,
  c_double        double precision,
  c_numeric       numeric,
  c_numeric_12_2  numeric(12,2),
  c_numeric_40_20 numeric(40,20),
  c_numeric_5_0   numeric(5,0),
  c_money         money,
  c_bool          boolean,
  c_text          text,
  c_varchar       varchar(10),
  c_char          char(5),
  c_uuid          uuid,
  c_json          json,
  c_jsonb         jsonb,
  c_bytea         bytea,
  c_int_arr       integer[],
  c_text_arr      text[],
  c_numeric_arr   numeric[],
  c_mood          mood,
  c_date          date,
  c_time0         time(0),
  c_time3         time(3),
  c_time6         time(6),
  c_timetz        timetz,
  c_ts0           timestamp(0),
  c_ts3           timestamp(3),
  c_ts6           timestamp(6),
  c_tstz0         timestamptz(0),
  c_tstz3         timestamptz(3),
  c_tstz6         timestamptz(6),
  c_interval      interval,
  c_toast_text    text,
  c_toast_bytea   bytea,
  c_toast_jsonb   jsonb,
  c_toast_arr     text[] NOT NULL DEFAULT '{}',
  c_upd           integer NOT NULL DEFAULT 0
);
ALTER TABLE fidelity REPLICA IDENTITY DEFAULT;
ALTER TABLE fidelity ALTER c_toast_text SET STORAGE EXTERNAL, ALTER c_toast_bytea SET STORAGE EXTERNAL,
  ALTER c_toast_jsonb SET STORAGE EXTERNAL, ALTER c_toast_arr SET STORAGE EXTERNAL;
`;

const COLS = `id, c_smallint, c_int, c_bigint, c_real, c_double, c_numeric, c_numeric_12_2, c_numeric_40_20, c_numeric_5_0,
  c_money, c_bool, c_text, c_varchar, c_char, c_uuid, c_json, c_jsonb, c_bytea, c_int_arr, c_text_arr, c_numeric_arr, c_mood,
  c_date, c_time0, c_time3, c_time6, c_timetz, c_ts0, c_ts3, c_ts6, c_tstz0, c_tstz3, c_tstz6, c_interval,
  c_toast_text, c_toast_bytea, c_toast_jsonb, c_toast_arr, c_upd`;

// row 1: ordinary values, large TOASTed ones; row 2: edge values; row 3: NULLs everywhere allowed
const ROW1 = `(1, 1, 2, 3, 1.5, 2.25, 12345.6789, 1234.56, 3.14159265358979323846, 42, 1234.56, true,
  'plain text', 'varchar', 'abc', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": 1, "b": [1, 2]}', '{"a": 1, "b": [1, 2]}',
  '\\x0102feff', '{1,2,3}', '{a,b,c}', '{1.5,2.25}', 'happy',
  '2024-02-29', '13:51:30', '13:51:30.123', '13:51:30.123456', '13:51:30.123456+02', '2024-02-29 13:51:30',
  '2024-02-29 13:51:30.123', '2024-02-29 13:51:30.123456', '2024-02-29 13:51:30+00', '2024-02-29 13:51:30.123+01',
  '2024-02-29 13:51:30.123456-05:30', '1 year 2 mons 3 days 04:05:06.789',
  ${big.text("row1-text")}, ${big.bytea("row1-bytea")}, ${big.jsonb("row1-jsonb")}, ${big.array("row1-arr")}, 1)`;
const ROW2 = `(2, -32768, 2147483647, 9007199254740993, 'NaN', 'Infinity', 'NaN',
  -9999999999.99, 12345678901234567890.12345678901234567890, -99999, -92233720368547758.08, false,
  E'quote '' dq " backslash \\\\ tab \\t nl \\n unicode é € 😀', 'ÄÖÜäöüß€😀x', 'x', '00000000-0000-0000-0000-000000000000',
  '{"big": 12345678901234567890, "exact": 1.0000000000000000000001, "dup": 1, "dup": 2,   "ws" :  true}',
  '{"big": 12345678901234567890, "exact": 1.0000000000000000000001, "nested": {"a": [1, {"b": null}], "s": "é\\u00e9x"}}',
  '\\x00', '{NULL,-1,2147483647}', '{"a,b","c\\"d","",NULL,"NULL","{}"}', '{NaN,-0.000000000000000000001,123456789012345678901234567890}', 'very happy',
  '0001-01-01', '00:00:00', '23:59:59.999', '24:00:00', '00:00:00-14:59', '0001-01-01 00:00:00',
  '1970-01-01 00:00:00.001', '9999-12-31 23:59:59.999999', '1970-01-01 00:00:00+00', '1900-01-01 00:00:00.5+00',
  '2262-04-11 23:47:16.854775+00', '-1 years -2 mons +3 days -04:05:06.789',
  'small', '\\x', '{"small": true}', '{x}', 2)`;
/** the generated large values, by name: the manifest records each one's md5 and length */
const GENERATED: Record<string, string> = {
  "row1-text": big.text("row1-text"), "row1-bytea": big.bytea("row1-bytea"), "row1-jsonb": big.jsonb("row1-jsonb"), "row1-arr": big.array("row1-arr"),
  "row4-text": big.text("row4-text"), "row4-text-v2": big.text("row4-text-v2"), "row4-bytea": big.bytea("row4-bytea"), "row4-jsonb": big.jsonb("row4-jsonb"), "row4-arr": big.array("row4-arr"),
  "row6-text": big.text("row6-text"), "row6-bytea": big.bytea("row6-bytea"), "row6-jsonb": big.jsonb("row6-jsonb"), "row6-arr": big.array("row6-arr"),
};
const ROW3 = `(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{}', 3)`;
const ROW4 = `(4, 4, 4, -9223372036854775808, '-Infinity', '-Infinity', 0.1, 0.01, 0, 0, 0, true,
  'inserted', 'v', 'abcde', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '[]', '[]', '\\xdeadbeef', '{}', '{}', '{}', 'sad',
  '1970-01-01', '12:00:00', '12:00:00.5', '12:00:00.000001', '00:00:00+00', '1970-01-01 00:00:00',
  '1969-12-31 23:59:59.999', '1969-12-31 23:59:59.999999', '1969-12-31 23:59:59+00', '1969-12-31 23:59:59.999+00',
  '1969-12-31 23:59:59.999999+00', '00:00:00',
  ${big.text("row4-text")}, ${big.bytea("row4-bytea")}, ${big.jsonb("row4-jsonb")}, ${big.array("row4-arr")}, 4)`;
const ROW5 = `(5, 5, 5, 9223372036854775807, 3.4028235e38, 1.7976931348623157e308, 1e-30,
  0.1, 99999999999999999999.99999999999999999999, 1, 92233720368547758.07, NULL,
  '', '', '', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'null', '"string"', '\\x5f5f756e6368616e6765645f746f6173745f5f',
  '{{1,2},{3,4}}', '{"__debezium_unavailable_value"}', NULL, 'ok',
  '2000-01-01', '23:59:59', '00:00:00.001', '00:00:00.000001', '23:59:59.999999-12', '2000-01-01 00:00:00',
  '2000-01-01 00:00:00.001', '2000-01-01 00:00:00.000001', '2000-01-01 00:00:00+00', '2000-01-01 00:00:00.001+00',
  '2000-01-01 00:00:00.000001+00', '1 mon',
  '__debezium_unavailable_value', NULL, NULL, '{}', 5)`;
// values Debezium may have no encoding for, inserted in a step of their own (what it sends is the fact)
const ROW7 = `(7, 7, 7, 7, 7, 7, 'Infinity', 7, 7, 7, 7, true, 'edge dates', 'v', 'v', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  'infinity', NULL, NULL, NULL, NULL, 'infinity', '-infinity', '4713-01-01 00:00:00 BC', 'infinity', '-infinity', '0044-03-15 12:00:00+00 BC',
  '178000000 years', '', NULL, NULL, '{}', 7)`;
const ROW8 = `(8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, true, 'bc date', 'v', 'v', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  '0044-03-15 BC', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '', NULL, NULL, '{}', 8)`;

interface Step {
  name: string;
  what: string;
  sql: string;
  /** records each connector publishes for it on the table's topic (tombstones included) */
  events: number;
}
export const STEPS: Step[] = [
  { name: "snapshot", what: "rows 1-3 exist before the connector starts: op r", sql: `INSERT INTO fidelity (${COLS}) VALUES ${ROW1}, ${ROW2}, ${ROW3};`, events: 3 },
  { name: "insert", what: "rows 4 (large TOASTed values) and 5 (edge values, placeholder look-alikes) inserted in one transaction: op c", sql: `BEGIN; INSERT INTO fidelity (${COLS}) VALUES ${ROW4}; INSERT INTO fidelity (${COLS}) VALUES ${ROW5}; COMMIT;`, events: 2 },
  { name: "update-untoasted", what: "rows 1 and 4 updated without touching their TOASTed columns: op u, those columns arrive as the unavailable-value placeholder", sql: `UPDATE fidelity SET c_upd = c_upd + 100, c_int = c_int + 1 WHERE id IN (1, 4);`, events: 2 },
  { name: "update-one-toasted", what: "row 4: one TOASTed column changed (sent whole), the other TOASTed columns untouched (placeholders)", sql: `UPDATE fidelity SET c_toast_text = ${big.text("row4-text-v2")}, c_upd = c_upd + 1 WHERE id = 4;`, events: 1 },
  { name: "update-to-null", what: "row 2: columns set to NULL and to new values: op u with explicit nulls", sql: `UPDATE fidelity SET c_text = NULL, c_json = NULL, c_bytea = NULL, c_int_arr = NULL, c_numeric = 1.5, c_money = NULL, c_date = NULL, c_upd = c_upd + 1 WHERE id = 2;`, events: 1 },
  { name: "update-key", what: "row 2's primary key changed to 20: op d for key 2, its tombstone, op c for key 20 (headers __debezium.oldkey / newkey)", sql: `UPDATE fidelity SET id = 20 WHERE id = 2;`, events: 3 },
  { name: "delete", what: "row 4 (TOASTed values) deleted: op d (before = key + filler values), then a tombstone", sql: `DELETE FROM fidelity WHERE id = 4;`, events: 2 },
  { name: "edge-values", what: "rows 7 and 8: infinite and BC dates and timestamps, numeric Infinity, a very long interval", sql: `INSERT INTO fidelity (${COLS}) VALUES ${ROW7}; INSERT INTO fidelity (${COLS}) VALUES ${ROW8};`, events: 2 },
  { name: "message", what: "a transactional logical-decoding message (pg_logical_emit_message), on topic <prefix>.message: op m", sql: `SELECT pg_logical_emit_message(true, 'fidelity', 'hello from the fidelity table');`, events: 0 },
  { name: "truncate", what: "TRUNCATE (skipped.operations=none): op t, null key", sql: `TRUNCATE fidelity;`, events: 1 },
  { name: "insert-after-truncate", what: "row 6 inserted after the truncate: op c", sql: `INSERT INTO fidelity (${COLS}) VALUES ${ROW1.replace("(1, 1, 2, 3,", "(6, 1, 2, 3,").replace(/row1-/g, "row6-")};`, events: 1 },
];

// ---------------------------------------------------------------------------------------------
const args = process.argv.slice(2);
const flag = (f: string) => args.includes(f);
const opt = (f: string) => {
  const i = args.indexOf(f);
  return i >= 0 ? args[i + 1] : undefined;
};
const check = flag("--check");
const keep = flag("--keep");
const out = opt("--out") ?? (check ? mkdtempSync(join(tmpdir(), "fixtures-")) : FIXTURES);
let stackDir = opt("--stack-dir");
const log = (m: string) => process.stderr.write(`record-fixtures: ${m}\n`);

function run(cmd: string[], opts: { input?: string } = {}): { code: number; out: string; err: string } {
  const p = Bun.spawnSync(cmd, { cwd: ROOT, stdin: opts.input ? new TextEncoder().encode(opts.input) : "ignore", stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? 1, out: p.stdout.toString(), err: p.stderr.toString() };
}

function readEnv(dir: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const l of readFileSync(join(dir, "env"), "utf8").split("\n")) {
    const m = /^export ([A-Z_]+)='(.*)'$/.exec(l);
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

let ownStack: string | undefined;
if (!stackDir && !opt("--compare")) {
  ownStack = mkdtempSync(join(tmpdir(), "fixture-stack-"));
  chmodSync(ownStack, 0o755); // PostgreSQL runs as its own user inside
  stackDir = join(ownStack, "stack");
  log(`starting a throwaway stack in ${stackDir}`);
  const r = run(["bash", "scripts/stack.sh", "up", "--dir", stackDir]);
  if (r.code !== 0) {
    process.stderr.write(r.err);
    rmSync(ownStack, { recursive: true, force: true });
    process.exit(1);
  }
}
const env = stackDir ? readEnv(stackDir) : {};
const stopStack = () => {
  if (!ownStack) return;
  if (keep) return log(`stack left running: scripts/stack.sh down --dir ${stackDir}`);
  run(["bash", "scripts/stack.sh", "down", "--dir", stackDir!]);
  rmSync(ownStack, { recursive: true, force: true });
};

const ecomUrl = new URL(env.ECOM_DB_URL ?? "postgres://localhost/");
const dbUrl = (db: string) => {
  const u = new URL(ecomUrl);
  u.pathname = `/${db}`;
  return u.toString();
};
const connectUrl = env.CONNECT_URL!;
const secrets = env.CONNECT_SECRETS_DIR!;

async function rest(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  for (let attempt = 0; ; attempt++) {
    const r = await fetch(`${connectUrl}${path}`, { method, headers: { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    // 409: the worker group is rebalancing (a worker just started or left): try again
    if (r.status === 409 && attempt < 60) {
      await new Promise((res) => setTimeout(res, 500));
      continue;
    }
    return { status: r.status, json: text ? JSON.parse(text) : null };
  }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  mode: Mode;
  form: (typeof FORMS)[number];
  name: string; // topic prefix = file name
  connector: string; // the connector's name: unique per recording, since Kafka Connect keeps the
  // source offsets of a deleted connector and a new one of the same name would resume from them
  slot: string;
  config: Record<string, string>;
}
const runTag = Date.now().toString(36);
const runs: Run[] = MODES.flatMap((mode, i) =>
  FORMS.map((form) => {
    const name = `fidelity-${mode.name}-${form.name}`;
    const slot = `fid_${String.fromCharCode(97 + i)}_${form.name}`;
    const config: Record<string, string> = {
      "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
      "tasks.max": "1",
      "plugin.name": "pgoutput",
      "database.hostname": "ecom-db",
      "database.port": "5432",
      "database.user": "${directory:/mnt/db-credentials:ECOM_DB_USER}",
      "database.password": "${directory:/mnt/db-credentials:ECOM_DB_PASSWORD}",
      "database.dbname": mode.db,
      "topic.prefix": name,
      "table.include.list": "public.fidelity",
      "slot.name": slot,
      "publication.name": slot,
      "publication.autocreate.mode": "filtered",
      "snapshot.mode": "initial",
      "tombstones.on.delete": "true",
      "skipped.operations": "none",
      "heartbeat.interval.ms": "0",
      ...mode.config,
      "key.converter": "org.apache.kafka.connect.json.JsonConverter",
      "key.converter.schemas.enable": form.schemas,
      "value.converter": "org.apache.kafka.connect.json.JsonConverter",
      "value.converter.schemas.enable": form.schemas,
      "value.converter.replace.null.with.default": "false",
    };
    return { mode, form, name, connector: `${name}-${runTag}`, slot, config };
  }),
);
const registered = (c: Record<string, string>): Record<string, string> => ({
  ...c,
  "database.hostname": ecomUrl.hostname,
  "database.port": ecomUrl.port,
  "database.user": c["database.user"]!.replace("/mnt/db-credentials", secrets),
  "database.password": c["database.password"]!.replace("/mnt/db-credentials", secrets),
});

// ---------------------------------------------------------------------------------------------
const BIG = 2000; // source values longer than this are stored as {md5, length}
const md5 = (s: string | Uint8Array) => createHash("md5").update(s).digest("hex");
const summarize = (v: string | null) => (v !== null && v.length > BIG ? { md5: md5(v), length: v.length } : v);

async function dumpRows(sql: postgres.Sql): Promise<Array<Record<string, unknown>>> {
  const cols = COLS.split(",").map((c) => c.trim());
  const q = `SELECT row_to_json(t)::text AS j FROM (SELECT ${cols.map((c) => `${c}::text AS ${c}`).join(", ")} FROM fidelity ORDER BY id) t`;
  const rows = await sql.unsafe(q);
  return rows.map((r) => {
    const o = JSON.parse(r.j as string) as Record<string, string | null>;
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, summarize(v)]));
  });
}

const SEP_FIELD = "\x1f";
const SEP_HEADER = "\x1d";
const SEP_LINE = "\x1e\n";
const NULL = "\x01NULL";

interface KRecord {
  topic: string;
  partition: number;
  offset: number;
  headers: Array<[string, string | null]>;
  key: string | null;
  value: string | null;
}
/** Everything on a topic, as raw text (JsonConverter output is UTF-8 without control characters). */
async function consume(topic: string, want: number, idleMs: number): Promise<KRecord[]> {
  const p = Bun.spawn(
    [
      "bash", "scripts/stack.sh", "tool", "org.apache.kafka.tools.consumer.ConsoleConsumer",
      "--bootstrap-server", env.BOOTSTRAP_SERVERS!, "--topic", topic, "--from-beginning",
      "--timeout-ms", String(idleMs), ...(want > 0 ? ["--max-messages", String(want)] : []),
      "--command-property", "auto.offset.reset=earliest",
      ...["print.partition", "print.offset", "print.headers", "print.key", "print.value"].flatMap((k) => ["--formatter-property", `${k}=true`]),
      "--formatter-property", `key.separator=${SEP_FIELD}`,
      "--formatter-property", `headers.separator=${SEP_HEADER}`,
      "--formatter-property", `line.separator=${SEP_LINE}`,
      "--formatter-property", `null.literal=${NULL}`,
    ],
    { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
  );
  const [text] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  const records: KRecord[] = [];
  for (const line of text.split(SEP_LINE)) {
    if (!line) continue;
    const [part, off, hdrs, key, value, ...rest] = line.split(SEP_FIELD);
    if (rest.length || value === undefined) throw new Error(`unexpected console consumer line: ${JSON.stringify(line.slice(0, 300))}`);
    const headers: Array<[string, string | null]> =
      hdrs === "NO_HEADERS" ? [] : hdrs!.split(SEP_HEADER).map((h) => {
        const i = h.indexOf(":");
        const v = h.slice(i + 1);
        return [h.slice(0, i), v === NULL ? null : v];
      });
    const partition = Number(part!.replace("Partition:", ""));
    const offset = Number(off!.replace("Offset:", ""));
    // a line the consumer's own output (a warning) ran into is not a record
    if (!Number.isInteger(partition) || !Number.isInteger(offset)) throw new Error(`unexpected console consumer line: ${JSON.stringify(line.slice(0, 300))}`);
    records.push({
      topic,
      partition,
      offset,
      headers,
      key: key === NULL ? null : key!,
      value: value === NULL ? null : value!,
    });
  }
  return records;
}

// ---------------------------------------------------------------------------------------------
/** the recorder's replication slots, once their connectors have let go of them */
async function dropSlots(admin: postgres.Sql): Promise<void> {
  for (const r of runs) {
    for (let i = 0; i < 100; i++) {
      const s = await admin`SELECT active FROM pg_replication_slots WHERE slot_name = ${r.slot}`;
      if (!s.length) break;
      if (!s[0]!.active) {
        await admin`SELECT pg_drop_replication_slot(${r.slot})`;
        break;
      }
      await sleep(200);
    }
  }
}

async function record(): Promise<void> {
  mkdirSync(out, { recursive: true });
  const admin = postgres(dbUrl("postgres"), { max: 1, onnotice: () => {} });
  const serverVersion = (await admin`SHOW server_version`)[0]!.server_version as string;

  // a clean slate: connectors, slots, databases (a re-run against a kept stack)
  const earlier = ((await rest("GET", "/connectors")).json ?? []) as string[];
  for (const c of earlier.filter((c) => c.startsWith("fidelity-"))) await rest("DELETE", `/connectors/${c}`);
  await dropSlots(admin);
  if (!ownStack) {
    const tool = (...a: string[]) => run(["bash", "scripts/stack.sh", "tool", "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", env.BOOTSTRAP_SERVERS!, ...a]);
    if (tool("--list").out.split("\n").some((t) => t.startsWith("fidelity-"))) {
      tool("--delete", "--topic", "fidelity-.*");
      for (let i = 0; i < 100 && tool("--list").out.split("\n").some((t) => t.startsWith("fidelity-")); i++) await sleep(300);
    }
  }
  const dbs = MODES.map((m) => m.db);
  for (const db of dbs) {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await admin.unsafe(`CREATE DATABASE ${db}`);
  }
  const conns = Object.fromEntries(dbs.map((db) => [db, postgres(dbUrl(db), { max: 1, onnotice: () => {} })]));
  const steps: Array<{ name: string; what: string; sql: string; rows: unknown }> = [];
  const runStep = async (step: Step) => {
    let dump: string | undefined;
    let rows: unknown;
    for (const db of dbs) {
      await conns[db]!.unsafe(step.sql).simple();
      rows = await dumpRows(conns[db]!);
      const d = JSON.stringify(rows);
      if (dump !== undefined && d !== dump) throw new Error(`source rows differ between databases after step ${step.name}`);
      dump = d;
    }
    steps.push({ name: step.name, what: step.what, sql: step.sql.replace(/\s+/g, " "), rows });
    log(`step ${step.name}`);
  };
  for (const db of dbs) await conns[db]!.unsafe(DDL).simple();
  await runStep(STEPS[0]!);
  // the large values really live out of line, uncompressed: TOAST chunks of about 2 kB each
  const toast = await conns[dbs[0]!]!.unsafe(`SELECT reltoastrelid::regclass::text AS t FROM pg_class WHERE oid = 'fidelity'::regclass`);
  const chunks = Number((await conns[dbs[0]!]!.unsafe(`SELECT count(*) AS n FROM ${toast[0]!.t}`))[0]!.n);
  if (chunks < 20) throw new Error(`only ${chunks} TOAST chunks: the large values are not stored out of line`);
  log(`row 1's large values stored out of line in ${chunks} TOAST chunks`);
  const columns = await conns[dbs[0]!]!.unsafe(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type, attnotnull AS not_null FROM pg_attribute WHERE attrelid = 'fidelity'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
  );
  const generated: Record<string, unknown> = {};
  for (const [k, expr] of Object.entries(GENERATED)) {
    const g = (await conns[dbs[0]!]!.unsafe(`SELECT md5(v::text) AS md5, length(v::text) AS length FROM (SELECT ${expr} AS v) x`))[0]!;
    generated[k] = { sql: expr, md5: g.md5, length: g.length };
  }

  const t0 = performance.now();
  for (const r of runs) {
    const res = await rest("PUT", `/connectors/${r.connector}/config`, registered(r.config));
    if (res.status >= 300) throw new Error(`PUT ${r.name}: HTTP ${res.status} ${JSON.stringify(res.json)}`);
  }
  // running, and streaming: the slot exists and is in use (the snapshot ran inside the slot's
  // exported snapshot, so every later change is streamed, not snapshotted)
  const deadline = Date.now() + 120_000;
  for (const r of runs) {
    for (;;) {
      const st = await rest("GET", `/connectors/${r.connector}/status`);
      const states = [st.json?.connector?.state, ...(st.json?.tasks ?? []).map((t: any) => t.state)];
      if (states.includes("FAILED")) throw new Error(`${r.name} FAILED: ${JSON.stringify(st.json).slice(0, 3000)}`);
      const slot = await admin`SELECT active FROM pg_replication_slots WHERE slot_name = ${r.slot}`;
      if (states.length > 1 && states.every((s) => s === "RUNNING") && slot[0]?.active) break;
      if (Date.now() > deadline) throw new Error(`${r.name} not streaming after 120 s: ${JSON.stringify(st.json)}`);
      await sleep(200);
    }
  }
  log(`${runs.length} connectors running and streaming ${((performance.now() - t0) / 1000).toFixed(1)} s after registration`);
  for (const step of STEPS.slice(1)) await runStep(step);

  const want = STEPS.reduce((n, s) => n + s.events, 0);
  const MESSAGES = STEPS.filter((s) => s.name === "message").length;
  const files: unknown[] = [];
  const results = await Promise.all(
    runs.map(async (r) => {
      const topic = `${r.name}.public.fidelity`;
      let recs: KRecord[] = [];
      for (let i = 0; i < 10 && recs.length < want; i++) recs = await consume(topic, want + 1, 4000);
      const failed = (await rest("GET", `/connectors/${r.connector}/status`)).json;
      if (recs.length < want) throw new Error(`${topic}: ${recs.length} records, expected ${want}; connector status ${JSON.stringify(failed).slice(0, 2000)}`);
      // like the table's topic: read until the one message is there (a console consumer started
      // under load can time out before it has joined and fetched)
      let messages: KRecord[] = [];
      for (let i = 0; i < 10 && messages.length < MESSAGES; i++) messages = await consume(`${r.name}.message`, MESSAGES + 1, 4000);
      if (messages.length < MESSAGES) throw new Error(`${r.name}.message: ${messages.length} records, expected ${MESSAGES}`);
      return { r, recs: [...recs, ...messages] };
    }),
  );
  for (const { r, recs } of results) {
    const text = recs.map((x) => JSON.stringify(x)).join("\n") + "\n";
    const gz = text.length > 1_000_000;
    const file = `${r.name.replace(/^fidelity-/, "")}.jsonl${gz ? ".gz" : ""}`;
    writeFileSync(join(out, file), gz ? gzipSync(text, { level: 9 }) : text);
    const counts: Record<string, number> = {};
    for (const x of recs) {
      const op = x.value === null ? (x.key === null ? "null" : "tombstone") : (/"op":"([a-z])"/.exec(x.value.slice(-400))?.[1] ?? /"op":"([a-z])"/.exec(x.value)?.[1] ?? "?");
      counts[`${x.topic.endsWith(".message") ? "message:" : ""}${op}`] = (counts[`${x.topic.endsWith(".message") ? "message:" : ""}${op}`] ?? 0) + 1;
    }
    files.push({
      file,
      connector: r.name,
      topics: [...new Set(recs.map((x) => x.topic))],
      form: r.form.name,
      modes: { ...r.mode.config, "key.converter.schemas.enable": r.form.schemas, "value.converter.schemas.enable": r.form.schemas },
      records: recs.length,
      ops: counts,
      config: r.config,
    });
    log(`${file}: ${recs.length} records ${JSON.stringify(counts)}`);
  }
  for (const r of runs) await rest("DELETE", `/connectors/${r.connector}`);
  await dropSlots(admin); // inactive slots would hold the cluster's WAL forever
  await Promise.all(Object.values(conns).map((c) => c.end()));
  await admin.end();

  writeFileSync(
    join(out, "source.json"),
    JSON.stringify({ table: "public.fidelity", ddl: DDL.trim(), columns: columns.map((c) => ({ ...c })), large_values: `text longer than ${BIG} characters is given as {md5, length} of its PostgreSQL text form`, steps }, null, 1) + "\n",
  );
  writeFileSync(
    join(out, "manifest.json"),
    JSON.stringify(
      {
        recorded_with: { debezium: "3.6.1.Final", kafka: "4.3.0", postgresql: serverVersion, converter: "org.apache.kafka.connect.json.JsonConverter" },
        how: "scripts/record-fixtures.sh: four connector configs (every value of every encoding mode at least once) x two JsonConverter forms, one connector each, on identical databases fed the same statements; every record of the table's topic (and of <prefix>.message) as consumed, in offset order",
        record_format: "one JSON object per line: topic, partition, offset, headers ([name, value as text]), key and value (the message's bytes as text, or null)",
        source: "source.json: the table's DDL, and after every step the statement run and the rows as PostgreSQL text (SELECT col::text)",
        events_per_step: Object.fromEntries(STEPS.map((s) => [s.name, s.events])),
        generated_values: generated,
        files,
      },
      null,
      1,
    ) + "\n",
  );
}

// ---------------------------------------------------------------------------------------------
// --check: what may differ between two recordings of the same statements
const VARYING = [
  [/"(ts_ms|ts_us|ts_ns|txId|lsn|xmin)":\d+/g, '"$1":0'],
  [/"sequence":"\[[^\]]*\]"/g, '"sequence":"[]"'],
] as const;
export function normalize(s: string | null): string | null {
  if (s === null) return null;
  let t = s;
  for (const [re, by] of VARYING) t = t.replace(re, by);
  return t;
}
function readRecords(file: string): KRecord[] {
  const buf = readFileSync(file);
  const text = file.endsWith(".gz") ? gunzipSync(buf).toString() : buf.toString();
  return text.split("\n").filter(Boolean).map((l) => JSON.parse(l) as KRecord);
}
function compare(dir: string): string[] {
  const problems: string[] = [];
  const listed = (d: string) => readdirSync(d).filter((f) => /\.jsonl(\.gz)?$/.test(f)).sort();
  const a = listed(FIXTURES);
  const b = listed(dir);
  if (a.join() !== b.join()) problems.push(`files differ: committed ${a.join(", ")}; recorded ${b.join(", ")}`);
  for (const f of a.filter((x) => b.includes(x))) {
    const x = readRecords(join(FIXTURES, f));
    const y = readRecords(join(dir, f));
    if (x.length !== y.length) problems.push(`${f}: ${x.length} records committed, ${y.length} recorded`);
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
      const p = x[i]!;
      const q = y[i]!;
      const hdr = (h: KRecord["headers"]) => JSON.stringify(h.map(([k, v]) => [k, k === "__debezium.context.runId" ? "" : v]));
      for (const [what, u, v] of [
        ["topic/partition/offset", `${p.topic}/${p.partition}/${p.offset}`, `${q.topic}/${q.partition}/${q.offset}`],
        ["headers", hdr(p.headers), hdr(q.headers)],
        ["key", normalize(p.key), normalize(q.key)],
        ["value", normalize(p.value), normalize(q.value)],
      ] as const) {
        if (u !== v) problems.push(`${f} record ${i} (offset ${p.offset}): ${what} differs:\n  committed ${diffAt(u, v)}`);
      }
    }
  }
  const src = (d: string) => JSON.stringify(JSON.parse(readFileSync(join(d, "source.json"), "utf8")).steps);
  if (src(FIXTURES) !== src(dir)) problems.push("source.json: the source rows differ (the table or its statements changed?)");
  return problems;
}
function diffAt(u: string | null, v: string | null): string {
  if (u === null || v === null) return `${JSON.stringify(u)?.slice(0, 200)}\n  recorded  ${JSON.stringify(v)?.slice(0, 200)}`;
  let i = 0;
  while (i < u.length && u[i] === v[i]) i++;
  const from = Math.max(0, i - 80);
  return `…${u.slice(from, i + 120)}\n  recorded  …${v.slice(from, i + 120)}`;
}

// ---------------------------------------------------------------------------------------------
let code = 0;
const compareOnly = opt("--compare");
if (compareOnly) {
  const problems = compare(compareOnly);
  for (const p of problems.slice(0, 50)) process.stderr.write(`${p}\n`);
  log(problems.length ? `${problems.length} difference(s) from the committed fixtures` : "the recording matches the committed fixtures");
  process.exit(problems.length ? 1 : 0);
}
try {
  const t = performance.now();
  await record();
  log(`recorded into ${out} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  if (check) {
    if (!existsSync(join(FIXTURES, "manifest.json"))) throw new Error(`no committed fixtures in ${FIXTURES}`);
    const problems = compare(out);
    if (problems.length) {
      code = 1;
      log(`${problems.length} difference(s) from the committed fixtures:`);
      for (const p of problems.slice(0, 50)) process.stderr.write(`${p}\n`);
    } else log("Debezium's output matches the committed fixtures");
  }
} catch (e) {
  log(`failed: ${(e as Error).stack ?? e}`);
  code = 1;
} finally {
  if (check && !opt("--out")) rmSync(out, { recursive: true, force: true });
  stopStack();
}
process.exit(code);
