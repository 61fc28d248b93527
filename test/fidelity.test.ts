// Real Debezium output (test/fixtures/debezium, recorded by scripts/record-fixtures.sh from
// Debezium 3.6.1 in every encoding mode and both JSON forms) replayed through cdc-sink step by
// step: after each step every stored value must equal the source row, except where Debezium's
// encoding itself loses the value — each such case is listed below with its reason.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import type { Sql } from "postgres";
import { analyticsDb, config, ROOT, startDaemon, waitFor } from "./support/harness.ts";
import { sharedCluster } from "./support/pg.ts";
import { mockKafka } from "./support/kafka.ts";

const DIR = `${ROOT}test/fixtures/debezium/`;
type Md5 = { md5: string; length: number };
type SourceRow = Record<string, string | null | Md5>;
const source = JSON.parse(readFileSync(`${DIR}source.json`, "utf8")) as {
  ddl: string;
  columns: Array<{ name: string; type: string }>;
  steps: Array<{ name: string; rows: SourceRow[] }>;
};
const manifest = JSON.parse(readFileSync(`${DIR}manifest.json`, "utf8")) as {
  events_per_step: Record<string, number>;
  files: Array<{ file: string; topics: string[]; form: string; modes: Record<string, string>; config: Record<string, string> }>;
};
interface Rec {
  topic: string;
  key: string | null;
  value: string | null;
  headers: Array<[string, string | null]>;
}

/**
 * Where Debezium's encoding loses the value, per mode: [when, step, id, column, why] (the
 * fixtures' README lists what Debezium sends). A difference not listed here fails the test, and so
 * does a listed one that does not happen. Column "*": the row is missing (dead-lettered).
 */
type Modes = Record<string, string>;
const LOSSES: Array<[(m: Modes) => boolean, string, string, string, string]> = [];
const names = source.steps.map((s) => s.name);
/** Steps first..last (inclusive). */
const steps = (first: string, last = "message") => names.slice(names.indexOf(first), names.indexOf(last) + 1);
const lose = (when: (m: Modes) => boolean, range: string[], id: string, column: string, why: string) => {
  for (const step of range) LOSSES.push([when, step, id, column, why]);
};
const always = () => true;
const mode = (k: string, ...values: string[]) => (m: Modes) => values.includes(m[k]!);
const double = mode("decimal.handling.mode", "double");

// interval.handling.mode=numeric: microseconds with a month of 30.4375 days, saturating at 2^63-1
for (const [id, range] of [["1", steps("snapshot")], ["2", steps("snapshot", "update-to-null")], ["20", steps("update-key")], ["5", steps("insert")], ["7", steps("edge-values")], ["6", steps("insert-after-truncate", "insert-after-truncate")]] as const)
  lose(mode("interval.handling.mode", "numeric"), range, id, "c_interval", "interval as approximate microseconds");
// precise: a numeric without scale sends NaN and Infinity as null
lose(mode("decimal.handling.mode", "precise"), steps("snapshot", "update-one-toasted"), "2", "c_numeric", "NaN sent as null");
lose(mode("decimal.handling.mode", "precise"), steps("edge-values"), "7", "c_numeric", "Infinity sent as null");
// every mode: a numeric[] holding NaN is sent as null; multi-dimensional arrays as one level of nulls
lose((m) => !double(m), steps("snapshot", "update-to-null"), "2", "c_numeric_arr", "array with NaN sent as null");
lose(double, steps("update-to-null", "update-to-null"), "2", "c_numeric_arr", "array with NaN sent as null");
lose(always, steps("update-key"), "20", "c_numeric_arr", "array with NaN sent as null");
lose((m) => !double(m), steps("insert"), "5", "c_int_arr", "multi-dimensional array flattened to nulls");
// connect: time(6) and timestamp(6) in milliseconds
const connect = mode("time.precision.mode", "connect");
for (const [id, range] of [["1", steps("snapshot")], ["4", steps("insert", "update-key")], ["5", steps("insert")], ["6", steps("insert-after-truncate", "insert-after-truncate")]] as const) {
  lose(connect, range, id, "c_time6", "time(6) sent in milliseconds");
  lose(connect, range, id, "c_ts6", "timestamp(6) sent in milliseconds");
}
lose(connect, steps("snapshot", "update-to-null"), "2", "c_ts6", "timestamp(6) sent in milliseconds");
lose(connect, steps("update-key"), "20", "c_ts6", "timestamp(6) sent in milliseconds");
// base64 modes send an unchanged TOASTed bytea as null: nothing tells it from a real NULL (check warns)
const base64 = mode("binary.handling.mode", "base64", "base64-url-safe");
lose(base64, steps("update-untoasted"), "1", "c_toast_bytea", "unchanged TOAST bytea sent as null");
lose(base64, steps("update-untoasted", "update-key"), "4", "c_toast_bytea", "unchanged TOAST bytea sent as null");
// double: numerics beyond 15 digits rounded; values the rounding pushes out of range are dead letters
for (const [id, range] of [["1", steps("snapshot")], ["2", steps("update-to-null", "update-to-null")], ["20", steps("update-key")], ["6", steps("insert-after-truncate", "insert-after-truncate")]] as const)
  lose(double, range, id, "c_numeric_40_20", "numeric(40,20) through a double");
lose(double, steps("snapshot", "update-one-toasted"), "2", "*", "dead letter: money -92233720368547758.08 through a double is out of range");
lose(double, steps("insert"), "5", "*", "dead letter: numeric(40,20) 99999999999999999999.99… through a double overflows");

/** Events dead-lettered because Debezium's encoding made their value unstorable: [when, key payload, error]. */
const DEAD: Array<[(m: Modes) => boolean, string, string]> = [
  [double, '{"id":2}', 'column c_money: value "-92233720368547760" is out of range for type money'],
  [double, '{"id":5}', "column c_numeric_40_20: numeric field overflow"],
];

const kafka = mockKafka();

/** Each column of the analytics table as comparable text; timetz at UTC (Debezium sends it in UTC). */
async function analyticsRows(sql: Sql): Promise<Map<string, Record<string, string | null>>> {
  const cols = source.columns.map((c) =>
    c.name.startsWith("c_toast")
      ? `CASE WHEN ${c.name} IS NULL THEN NULL ELSE md5(${c.name}::text) || '/' || length(${c.name}::text) END AS ${c.name}`
      : c.type.startsWith("time with time zone")
        ? `(${c.name} AT TIME ZONE 'UTC')::text AS ${c.name}`
        : `${c.name}::text AS ${c.name}`,
  );
  const rows = await sql.unsafe(`SELECT ${cols.join(", ")} FROM fidelity ORDER BY id`);
  return new Map(rows.map((r) => [r.id as string, { ...r } as Record<string, string | null>]));
}

async function sourceText(sql: Sql, col: { name: string; type: string }, v: string | null | Md5): Promise<string | null> {
  if (v === null) return null;
  if (typeof v === "object") return `${v.md5}/${v.length}`;
  if (col.name.startsWith("c_toast")) {
    const [r] = await sql`SELECT md5(${v}) || '/' || length(${v}) AS t`;
    return r!.t as string;
  }
  if (col.type.startsWith("time with time zone")) {
    const [r] = await sql`SELECT (${v}::timetz AT TIME ZONE 'UTC')::text AS t`;
    return r!.t as string;
  }
  return v;
}

for (const f of manifest.files) {
  test(`Debezium ${f.form === "schema" ? "with schema" : "schemaless"}, ${Object.entries(f.modes)
    .filter(([k]) => !k.includes("converter"))
    .map(([k, v]) => `${k}=${v}`)
    .join(", ")}`, async () => {
    const pg = await sharedCluster();
    const url = await pg.createDatabase("fidelity");
    const sql = await analyticsDb(url);
    await sql.unsafe(source.ddl.replace(/ALTER TABLE[^;]*;/g, ""));
    await sql.unsafe(`ALTER TABLE fidelity ADD COLUMN _cdc_commit_lsn numeric(20,0), ADD COLUMN _cdc_lsn numeric(20,0), ADD COLUMN _cdc_synced_at timestamptz; SET TIME ZONE 'UTC'`);
    const topic = f.topics[0]!;
    kafka.mock.createTopic(topic, 1);
    const modes = Object.entries(f.config).filter(([k]) => /^(time\.precision|decimal\.handling|binary\.handling|interval\.handling|unavailable\.value)\./.test(k));
    const cfg = config(`
[kafka]
bootstrap_servers = "${kafka.mock.bootstrapServers}"
group_id = "fidelity-${f.file}"
[kafka.properties]
"fetch.wait.max.ms" = 10
[postgres]
url = "${url}"
[debezium]
${modes.map(([k, v]) => `"${k}" = "${v}"`).join("\n")}
[[mappings]]
topic = "${topic}"
table = "fidelity"
truncate = "truncate"
`);
    const records = readFileSync(`${DIR}${f.file}`, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Rec)
      .filter((r) => r.topic === topic);
    const run = await startDaemon(cfg);
    const found: string[] = [];
    let sent = 0;
    try {
      for (const step of source.steps) {
        const n = manifest.events_per_step[step.name] ?? 0;
        const batch = records.slice(sent, sent + n);
        sent += n;
        if (batch.length) {
          await kafka.producer.produce(
            topic,
            batch.map((r) => ({ key: r.key, value: r.value, headers: r.headers, partition: 0 })),
          );
          expect((await kafka.producer.flush(10_000)).failed).toEqual([]);
        }
        await waitFor(`step ${step.name} applied`, async () => (await sql`SELECT position::int AS p FROM cdc_sink.checkpoints`)[0]?.p === sent);
        const stored = await analyticsRows(sql);
        for (const id of stored.keys()) if (!step.rows.some((r) => r.id === id)) found.push(`${step.name} id=${id} *: not at the source`);
        for (const row of step.rows) {
          const got = stored.get(row.id as string);
          if (!got) {
            found.push(`${step.name} id=${row.id} *: missing`);
            continue;
          }
          for (const c of source.columns) {
            const want = await sourceText(sql, c, row[c.name] ?? null);
            if (want !== got[c.name]) found.push(`${step.name} id=${row.id} ${c.name}: source ${JSON.stringify(want)?.slice(0, 80)} analytics ${JSON.stringify(got[c.name])?.slice(0, 80)}`);
          }
        }
      }
    } finally {
      await run.stop();
    }
    const dead = (await sql`SELECT key, error FROM cdc_sink.dead_letters ORDER BY id`).map((d) => `${JSON.stringify(JSON.parse(d.key).payload ?? JSON.parse(d.key))}: ${d.error}`);
    const expected = LOSSES.filter(([when]) => when(f.modes)).map(([, step, id, col, why]) => ({ at: `${step} id=${id} ${col}`, why }));
    const unexplained = found.filter((d) => !expected.some((e) => d.startsWith(e.at + ":")));
    const notSeen = expected.filter((e) => !found.some((d) => d.startsWith(e.at + ":"))).map((e) => e.at);
    expect({ unexplained, notSeen, dead }).toEqual({ unexplained: [], notSeen: [], dead: DEAD.filter(([when]) => when(f.modes)).map(([, key, error]) => `${key}: ${error}`) });
    await sql.end();
  }, 120_000);
}
