// The five invariants, checked after every scenario:
//  (a) every analytics table equals the expected final state (the generator's model, or the source);
//  (b) no row's position ever goes backwards, sampled while the scenario runs;
//  (c) the dead-letter table holds exactly the planted records (none for pure faults);
//  (d) a full replay (a new consumer group; in PostgreSQL mode a new slot and state schema) changes nothing;
//  (e) PostgreSQL mode: the slot's confirmed_flush_lsn never passes the checkpoint stored in the target.
import type { Sql } from "postgres";
import { sleep } from "./env.ts";
import { TABLE, type KafkaWorkload } from "./workload.ts";

export type Verdict = { ok: true; detail: string } | { ok: false; detail: string } | { na: string };
export interface Invariants {
  a?: Verdict;
  b?: Verdict;
  c?: Verdict;
  d?: Verdict;
  e?: Verdict;
}

const pass = (detail: string): Verdict => ({ ok: true, detail });
const fail = (detail: string): Verdict => ({ ok: false, detail });
export const na = (why: string): Verdict => ({ na: why });
export const failed = (v: Verdict | undefined) => !!v && "ok" in v && !v.ok;

const cmp = (a: [bigint, bigint], b: [bigint, bigint]) => (a[0] !== b[0] ? (a[0] < b[0] ? -1 : 1) : a[1] === b[1] ? 0 : a[1] < b[1] ? -1 : 1);

/**
 * (b): every `everyMs` reads every row's (commit position, position) and keeps the highest seen per
 * key; a row found below it (updated backwards, or a deleted key back with an older change) is a
 * violation. Reads that fail (the database down) are counted and skipped.
 */
export class PositionSampler {
  readonly seen = new Map<string, [bigint, bigint]>();
  samples = 0;
  failedReads = 0;
  readonly violations: string[] = [];
  #stop = new AbortController();
  #done: Promise<void>;

  constructor(
    readonly sql: Sql,
    everyMs: number,
    readonly table = TABLE,
  ) {
    this.#done = (async () => {
      while (!this.#stop.signal.aborted) {
        await this.sample();
        await sleep(everyMs);
      }
    })();
  }

  #paused = false;
  #epoch = 0;

  /** The database itself is about to go back in time (restored from a copy): stop sampling. */
  pause(): void {
    this.#paused = true;
    this.#epoch++;
  }

  /** Sampling again after the database went back: what was seen before it no longer binds. */
  resume(): void {
    this.seen.clear();
    this.#epoch++;
    this.#paused = false;
  }

  async sample(): Promise<void> {
    if (this.#paused) return;
    const epoch = this.#epoch;
    let rows;
    try {
      rows = await this.sql.unsafe(`SELECT id::text AS id, _cdc_commit_lsn::text AS c, _cdc_lsn::text AS l FROM ${this.table}`);
    } catch {
      this.failedReads++;
      return;
    }
    if (epoch !== this.#epoch) return;
    this.samples++;
    for (const r of rows) {
      const p: [bigint, bigint] = [BigInt(r.c ?? -1), BigInt(r.l ?? -1)];
      const prev = this.seen.get(r.id);
      if (prev && cmp(p, prev) < 0) {
        if (this.violations.length < 20) this.violations.push(`key ${r.id}: (${p[0]}, ${p[1]}) after (${prev[0]}, ${prev[1]})`);
        else this.violations.length++;
      } else this.seen.set(r.id, p);
    }
  }

  async stop(): Promise<Verdict> {
    this.#stop.abort();
    await this.#done;
    await this.sample();
    return this.violations.length
      ? fail(`${this.violations.length} position(s) went backwards in ${this.samples} samples: ${this.violations.slice(0, 3).join("; ")}`)
      : pass(`${this.samples} samples of up to ${this.seen.size} keys, none went backwards${this.failedReads ? ` (${this.failedReads} reads failed while the database was down)` : ""}`);
  }
}

/** (e): every `everyMs` the slot's confirmed_flush_lsn (read first), then the stored checkpoint. */
export class FlushSampler {
  samples = 0;
  failedReads = 0;
  readonly violations: string[] = [];
  #stop = new AbortController();
  #done: Promise<void>;

  constructor(
    readonly source: () => Sql,
    readonly target: () => Sql,
    readonly slot: string,
    readonly stream: string,
    readonly part: string,
    everyMs: number,
    readonly stateSchema = "cdc_sink",
  ) {
    this.#done = (async () => {
      while (!this.#stop.signal.aborted) {
        await this.sample();
        await sleep(everyMs);
      }
    })();
  }

  async sample(): Promise<void> {
    try {
      const [s] = await this.source()`SELECT confirmed_flush_lsn::text AS lsn, pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::text AS n FROM pg_replication_slots WHERE slot_name = ${this.slot}`;
      if (!s || s.n === null) return;
      const [c] = await this.target().unsafe(`SELECT position::text AS p FROM ${this.stateSchema}.checkpoints WHERE stream = $1 AND part = $2`, [this.stream, this.part]);
      this.samples++;
      if (!c) return;
      if (BigInt(s.n) > BigInt(c.p)) this.violations.push(`confirmed_flush_lsn ${s.lsn} (${s.n}) past the checkpoint ${c.p}`);
    } catch {
      this.failedReads++;
    }
  }

  async stop(): Promise<Verdict> {
    this.#stop.abort();
    await this.#done;
    await this.sample();
    return this.violations.length
      ? fail(`${this.violations.length} of ${this.samples} samples: ${this.violations.slice(0, 3).join("; ")}`)
      : pass(`${this.samples} samples: confirmed_flush_lsn never past the stored checkpoint`);
  }
}

/** (a), Kafka: the table against the generator's model. */
export async function checkModel(sql: Sql, w: KafkaWorkload): Promise<Verdict> {
  const rows = await sql.unsafe(`SELECT id::text AS id, v::text AS v, note FROM ${TABLE}`);
  const stored = new Map(rows.map((r) => [Number(r.id), r as unknown as { v: string; note: string }]));
  const problems: string[] = [];
  let live = 0;
  for (const [id, want] of w.model) {
    const got = stored.get(id);
    stored.delete(id);
    if (want) live++;
    if (!want && got) problems.push(`key ${id} deleted at the source, stored (v ${got.v})`);
    else if (want && !got) problems.push(`key ${id} missing`);
    else if (want && got && (got.v !== want.v || got.note !== want.note)) problems.push(`key ${id}: (${got.v}, ${got.note}), expected (${want.v}, ${want.note})`);
  }
  for (const id of stored.keys()) problems.push(`key ${id} never produced, stored`);
  return problems.length ? fail(`${problems.length} row(s) differ from the model: ${problems.slice(0, 5).join("; ")}`) : pass(`${live} rows equal the model (${w.model.size - live} keys deleted)`);
}

/** (a), PostgreSQL: the analytics table against the source table. */
export async function checkSource(source: Sql, target: Sql): Promise<Verdict> {
  const q = `SELECT id::text AS id, v::text AS v, note FROM ${TABLE}`;
  const [src, dst] = await Promise.all([source.unsafe(q), target.unsafe(`${q} WHERE _cdc_deleted_at IS NULL`)]);
  const want = new Map(src.map((r) => [r.id as string, `${r.v}|${r.note}`]));
  const problems: string[] = [];
  for (const r of dst) {
    const w = want.get(r.id);
    want.delete(r.id);
    if (w === undefined) problems.push(`key ${r.id} not at the source, stored`);
    else if (w !== `${r.v}|${r.note}`) problems.push(`key ${r.id}: ${r.v}|${r.note}, source ${w}`);
  }
  for (const id of want.keys()) problems.push(`key ${id} missing`);
  return problems.length ? fail(`${problems.length} row(s) differ from the source: ${problems.slice(0, 5).join("; ")}`) : pass(`${src.length} rows equal the source`);
}

/** (c): the dead letters of `stream` are exactly `planted` (coordinates part@position), each once. */
export async function checkDeadLetters(sql: Sql, stream: string, planted: Set<string>, stateSchema = "cdc_sink"): Promise<Verdict> {
  const rows = await sql.unsafe(`SELECT part, position, count(*)::int AS n FROM ${stateSchema}.dead_letters WHERE stream = $1 GROUP BY 1, 2`, [stream]);
  const got = new Map(rows.map((r) => [`${r.part}@${r.position}`, r.n as number]));
  const extra = [...got.keys()].filter((k) => !planted.has(k));
  const missing = [...planted].filter((k) => !got.has(k));
  const twice = [...got].filter(([, n]) => n > 1).map(([k]) => k);
  const all = await sql.unsafe(`SELECT count(*)::int AS n FROM ${stateSchema}.dead_letters`);
  const others = (all[0]!.n as number) - rows.reduce((s, r) => s + (r.n as number), 0);
  if (extra.length || missing.length || twice.length)
    return fail(`${planted.size} planted: ${missing.length} missing (${missing.slice(0, 3).join(", ")}), ${extra.length} unexpected (${extra.slice(0, 3).join(", ")}), ${twice.length} written twice`);
  return pass(planted.size ? `exactly the ${planted.size} planted record(s), each once` : `none (a pure fault)${others ? `; ${others} of other streams` : ""}`);
}

/** Every row as text (all columns, bookkeeping included unless `dataOnly`): key -> md5. */
export async function fingerprint(sql: Sql, dataOnly = false): Promise<Map<string, string>> {
  const expr = dataOnly ? `md5(row(t.id, t.v, t.note, t._cdc_deleted_at IS NULL)::text)` : `md5(t::text)`;
  const rows = await sql.unsafe(`SELECT t.id::text AS id, ${expr} AS h FROM ${TABLE} t`);
  return new Map(rows.map((r) => [r.id as string, r.h as string]));
}

export function compareFingerprints(before: Map<string, string>, after: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, h] of before) {
    const a = after.get(k);
    if (a === undefined) out.push(`key ${k} gone`);
    else if (a !== h) out.push(`key ${k} changed`);
  }
  for (const k of after.keys()) if (!before.has(k)) out.push(`key ${k} appeared`);
  return out;
}

/** Checkpoints of a stream: part -> position. */
export async function checkpoints(sql: Sql, stream: string, stateSchema = "cdc_sink"): Promise<Map<string, bigint>> {
  const rows = await sql.unsafe(`SELECT part, position::text AS p FROM ${stateSchema}.checkpoints WHERE stream = $1`, [stream]);
  return new Map(rows.map((r) => [r.part as string, BigInt(r.p as string)]));
}

/** How many of `ends`' records the stream's checkpoints cover. */
export async function applied(sql: Sql, stream: string, ends: Map<string, bigint>): Promise<bigint> {
  const at = await checkpoints(sql, stream);
  let n = 0n;
  for (const [part, end] of ends) {
    const p = at.get(part) ?? 0n;
    n += p < end ? p : end;
  }
  return n;
}
