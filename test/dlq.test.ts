// cdc-sink dlq list|show|retry|discard against real PostgreSQL and the mock Kafka cluster: dead
// letters listed by table and reason, retried through the position-guarded applier once the cause
// is fixed (a stale one never overwrites newer data), discarded with an audit row; the daemon's
// pending gauge.
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres, { type Sql } from "postgres";
import { parseIds } from "../src/dlq/cli.ts";
import { tempDir } from "./support/cleanup.ts";
import { envelope, keyOf, newClock } from "./support/debezium.ts";
import { config, ROOT, startDaemon, waitFor } from "./support/harness.ts";
import { sharedCluster } from "./support/pg.ts";
import { mockKafka } from "./support/kafka.ts";

const dir = tempDir("cdc-sink-dlq-");
const BOOK = "_cdc_commit_lsn numeric(20,0), _cdc_lsn numeric(20,0), _cdc_synced_at timestamptz";
const open = (url: string) => postgres(url, { max: 2, onnotice: () => {} });
const rows = async (sql: Sql, q: string): Promise<Record<string, unknown>[]> => (await sql.unsafe(q)).map((r) => ({ ...r }));

const kafka = mockKafka();

/** The CLI as an operator runs it. */
function dlq(file: string, ...args: string[]) {
  const r = spawnSync("bun", [`${ROOT}src/main.ts`, "dlq", ...args, "--config", file], { encoding: "utf8", timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test("--id takes numbers, lists and ranges", () => {
  expect(parseIds(["3", "5,9-11"])).toEqual([3n, 5n, 9n, 10n, 11n]);
  expect(() => parseIds(["x"])).toThrow("--id x: expected a number or a range such as 9-12");
});

test("Kafka: list counts by table and reason; retry applies what now fits, keeps newer rows over stale dead letters, names what cannot be retried; discard keeps an audit row", async () => {
  const pg = await sharedCluster();
  const url = await pg.createDatabase("dlq");
  const dst = open(url);
  await dst.unsafe(`CREATE TABLE t_fact (id bigint PRIMARY KEY, code varchar(5), ${BOOK})`);
  const topic = `dlq${Date.now()}.public.t`;
  kafka.mock.createTopic(topic, 1);
  const toml = `
[kafka]
bootstrap_servers = "${kafka.mock.bootstrapServers}"
group_id = "dlq"
[kafka.properties]
"fetch.wait.max.ms" = 10
[postgres]
url = "${url}"
[http]
enabled = false
[[mappings]]
topic = "${topic}"
table = "t_fact"
`;
  const file = join(dir, "dlq.toml");
  writeFileSync(file, toml);
  const clock = newClock();
  const send = async (msgs: Array<{ key: string | null; value: string | Uint8Array }>) => {
    await kafka.producer.produce(topic, msgs);
    expect((await kafka.producer.flush(10_000)).failed).toEqual([]);
  };
  const ev = (id: number, op: "c" | "u", code: string) => JSON.stringify(envelope(clock, "t", op, { after: { id, code } }));
  const run = await startDaemon(config(toml));
  try {
    await send([
      { key: keyOf(1), value: ev(1, "c", "abcdefgh") },
      { key: keyOf(2), value: ev(2, "c", "ok") },
      { key: keyOf(3), value: ev(3, "c", "toolong3") },
      { key: keyOf(4), value: '{"op": "c", "after": ' },
      { key: keyOf(5), value: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) },
    ]);
    await waitFor("four dead letters", async () => (await dst`SELECT count(*)::int AS n FROM cdc_sink.dead_letters`)[0]!.n === 4);
    // a newer change of key 3 arrives and is applied: its dead letter is stale now
    await send([{ key: keyOf(3), value: ev(3, "u", "new3") }]);
    await waitFor("the newer change", async () => (await dst`SELECT code FROM t_fact WHERE id = 3`)[0]?.code === "new3");
    await waitFor("the pending gauge", async () => run.metrics.registry.render().includes('cdc_sink_dead_letters_pending{table="t_fact"} 4'));
  } finally {
    await run.stop();
  }
  const ids = Object.fromEntries((await dst`SELECT id::text, key FROM cdc_sink.dead_letters ORDER BY id`).map((r) => [JSON.parse(r.key as string).id, r.id as string]));

  const list = dlq(file, "list");
  expect(list.code).toBe(1);
  expect(list.out).toContain("4 pending dead letter(s)");
  expect(list.out).toMatch(/t_fact\s+apply 22001 \(value too long for the column\)\s+2\s/);
  expect(list.out).toMatch(/t_fact\s+decode DECODE\s+1\s/);
  expect(list.out).toMatch(/t_fact\s+decode INVALID_UTF8\s+1\s/);
  const show = dlq(file, "show", "--id", ids[1]!);
  expect(show.code).toBe(0);
  expect(show.out).toMatch(/^error\s+column code: value too long for type character varying\(5\)$/m);
  expect(show.out).toContain(`record         ${topic}/0 offset 0`);
  expect(dlq(file, "show").code).toBe(64);
  expect(dlq(file, "discard").code).toBe(64);
  expect(dlq(file, "drop", "--id", "1").code).toBe(64);

  // the cause fixed: the column is wider now
  await dst`ALTER TABLE t_fact ALTER COLUMN code TYPE varchar(20)`;
  const retry = dlq(file, "retry");
  expect(retry.code).toBe(1);
  expect(retry.out).toContain(`${ids[1]} t_fact: applied`);
  expect(retry.out).toContain(`${ids[3]} t_fact: superseded: the analytics row (or the key's delete) is newer: kept`);
  expect(retry.out).toMatch(new RegExp(`${ids[4]} t_fact: failed: .*JSON`));
  expect(retry.out).toContain(`${ids[5]} t_fact: not retryable: the record is not valid UTF-8`);
  expect(retry.out).toContain("retry: 1 applied, 1 superseded, 1 failed, 1 not retryable");
  expect(await rows(dst, "SELECT id::int, code FROM t_fact ORDER BY id")).toEqual([
    { id: 1, code: "abcdefgh" },
    { id: 2, code: "ok" },
    { id: 3, code: "new3" },
  ]);
  expect(await rows(dst, "SELECT id::text, retries FROM cdc_sink.dead_letters ORDER BY id")).toEqual([
    { id: ids[4], retries: 1 },
    { id: ids[5], retries: 0 },
  ]);

  const discard = dlq(file, "discard", "--id", ids[4]!, "--note", "producer bug, fixed upstream");
  expect(discard.code).toBe(0);
  expect(discard.out).toContain(`discarded 1 dead letter(s) (ids ${ids[4]}; kept in dead_letter_audit)`);
  const audit = await rows(dst, `SELECT id::text, action, outcome, note, value IS NOT NULL AS has_value FROM cdc_sink.dead_letter_audit ORDER BY id, audit_id`);
  const expected = [
    { id: ids[1], action: "retry", outcome: "applied", note: null, has_value: true },
    { id: ids[3], action: "retry", outcome: "superseded", note: "the analytics row (or the key's delete) is newer: kept", has_value: true },
    { id: ids[4], action: "retry", outcome: "failed", note: expect.stringContaining("JSON"), has_value: false },
    { id: ids[4], action: "discard", outcome: "discarded", note: "producer bug, fixed upstream", has_value: true },
  ];
  expect(audit).toEqual(expected.sort((a, b) => Number(a.id) - Number(b.id)));
  const gone = dlq(file, "show", "--id", ids[4]!);
  expect(gone.code).toBe(1);
  expect(gone.out).toContain(`dead letter ${ids[4]} is not pending`);
  expect(gone.out).toMatch(/history .* discard -> discarded \(producer bug, fixed upstream\)/);
  const json = JSON.parse(dlq(file, "list", "--json").out);
  expect(json.pending).toBe(1);
  expect(json.entries.map((e: { id: string }) => e.id)).toEqual([ids[5]]);
  await dst.end();
}, 180_000);

test("PostgreSQL source: a rejected change (its dead letter keeps the key) is read again from the source and applied once the column is widened", async () => {
  const pg = await sharedCluster();
  const srcUrl = await pg.createDatabase("dlqsrc");
  const dstUrl = await pg.createDatabase("dlqdst");
  const src = open(srcUrl);
  const dst = open(dstUrl);
  await src`CREATE TABLE a (id bigint PRIMARY KEY, code varchar(50))`;
  await dst.unsafe(`CREATE TABLE a_fact (id bigint PRIMARY KEY, code varchar(10), ${BOOK})`);
  const toml = `
[source]
kind = "postgres"
[postgres]
url = "${dstUrl}"
[http]
enabled = false
[[postgres_sources]]
name = "src"
url = "${srcUrl}"
slot = "dlq_${Math.random().toString(36).slice(2, 8)}"
[[mappings]]
source = "src"
source_table = "public.a"
table = "a_fact"
`;
  const file = join(dir, "dlq-pg.toml");
  writeFileSync(file, toml);
  const run = await startDaemon(config(toml), { verbose: !!process.env.VERBOSE });
  try {
    // streamed, not copied by the initial snapshot
    await waitFor("streaming", async () => run.daemon.readiness().length === 0);
    await src`INSERT INTO a VALUES (1, 'fits'), (2, ${"x".repeat(30)})`;
    await waitFor("a dead letter", async () => (await dst`SELECT count(*)::int AS n FROM cdc_sink.dead_letters`)[0]!.n === 1);
    await waitFor("the row that fits", async () => (await dst`SELECT count(*)::int AS n FROM a_fact`)[0]!.n === 1);
  } finally {
    await run.stop();
  }
  const [d] = await dst`SELECT id::text, key, value FROM cdc_sink.dead_letters`;
  expect([d!.key, d!.value]).toEqual(['["2"]', null]);
  const early = dlq(file, "retry");
  expect(early.out).toContain(`${d!.id} a_fact: failed: column code: value too long for type character varying(10)`);
  expect(early.code).toBe(1);
  expect((await dst`SELECT retries FROM cdc_sink.dead_letters`)[0]!.retries).toBe(1);
  await dst`ALTER TABLE a_fact ALTER COLUMN code TYPE varchar(50)`;
  const retry = dlq(file, "retry", "--table", "a_fact");
  expect(retry.out).toContain(`${d!.id} a_fact: applied: source row read again and applied`);
  expect(retry.code).toBe(0);
  expect(await rows(dst, "SELECT id::int, code FROM a_fact ORDER BY id")).toEqual([
    { id: 1, code: "fits" },
    { id: 2, code: "x".repeat(30) },
  ]);
  expect(dlq(file, "list").code).toBe(0);
  await Promise.all([src.end(), dst.end()]);
}, 120_000);
