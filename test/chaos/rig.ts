// What scenarios share: the run's context, a scenario's result, and two rigs — a Kafka-mode sink
// (a fresh analytics database and topic, the generator, daemons of one consumer group) and a
// PostgreSQL-source sink (a source cluster with a writer, the analytics database) — each ending with
// the invariants of checks.ts.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Sql } from "postgres";
import { applied, checkDeadLetters, checkModel, checkSource, checkpoints, compareFingerprints, fingerprint, FlushSampler, type Invariants, na, PositionSampler, type Verdict } from "./checks.ts";
import { DaemonProc, freePort, type KafkaEnv, metricValue, pg, type PgCluster, Rng, sleep, startCluster, waitUntil } from "./env.ts";
import { ANALYTICS_DDL, KafkaWorkload, SOURCE_DDL, TABLE } from "./workload.ts";

export type Mode = "short" | "long";

export interface Ctx {
  mode: Mode;
  seed: number;
  rng: Rng;
  bin: string;
  dir: string;
  log(s: string): void;
  /** the analytics cluster the Kafka scenarios share (a scenario that stops its database starts its own) */
  analytics(): Promise<PgCluster>;
  kafka(): Promise<KafkaEnv>;
  /** ip netns works: the fault proxy can sit on the Kafka link too */
  netns: boolean;
}

export interface Check {
  what: string;
  ok: boolean;
  detail: string;
}

export interface Result {
  name: string;
  title: string;
  /** what was injected, in words */
  injected: string;
  /** how many times */
  count: number;
  countDetail: string;
  /** source changes offered (Kafka: generated changes, tombstones not counted; PostgreSQL: changes committed at the source) */
  events: number;
  seconds: number;
  invariants: Invariants;
  checks: Check[];
  notes: string[];
  error?: string;
}

export function newResult(name: string, title: string): Result {
  return { name, title, injected: "", count: 0, countDetail: "", events: 0, seconds: 0, invariants: {}, checks: [], notes: [] };
}

export const check = (r: Result, what: string, ok: boolean, detail: string) => r.checks.push({ what, ok, detail });

let seq = 0;
const uniq = (p: string) => `${p}${process.pid}x${++seq}`;

/** Consumer-group timing: short sessions on the mock (a killed member is replaced in seconds); the real broker's minimum is 6 s. */
export function groupTiming(kafka: KafkaEnv): { session: number; heartbeat: number } {
  return kafka.kind === "mock" ? { session: 3000, heartbeat: 600 } : { session: 6000, heartbeat: 1000 };
}

// ---------------------------------------------------------------------------------------------
// Kafka mode

export interface KafkaRigOptions {
  partitions: number;
  keys: number;
  poisonEvery: number;
  /** the analytics cluster (default: the shared one) */
  cluster?: PgCluster;
  /** a database URL to use as it is (a tablespace prepared, say) */
  url?: string;
}

export class KafkaRig {
  readonly group: string;
  readonly stream: string;
  readonly topic: string;
  sampler: PositionSampler | undefined;
  readonly daemons: DaemonProc[] = [];

  private constructor(
    readonly ctx: Ctx,
    readonly name: string,
    readonly kafka: KafkaEnv,
    readonly url: string,
    readonly sql: Sql,
    readonly workload: KafkaWorkload,
  ) {
    this.group = `chaos_${name}_${process.pid}`;
    this.stream = `kafka:${this.group}`;
    this.topic = workload.o.topic;
  }

  static async create(ctx: Ctx, name: string, o: KafkaRigOptions): Promise<KafkaRig> {
    const kafka = await ctx.kafka();
    const url = o.url ?? (await (o.cluster ?? (await ctx.analytics())).createDatabase(`chaos_${name}`));
    const sql = pg(url, 4);
    await sql.unsafe(ANALYTICS_DDL);
    const topic = `${uniq(`chaos_${name}_`)}.public.${TABLE}`;
    await kafka.createTopic(topic, o.partitions);
    const w = new KafkaWorkload(kafka, { topic, partitions: o.partitions, keys: o.keys, poisonEvery: o.poisonEvery }, new Rng(ctx.rng.int(1, 2 ** 31)));
    return new KafkaRig(ctx, name, kafka, url, sql, w);
  }

  startSampler(everyMs: number): void {
    this.sampler = new PositionSampler(this.sql, everyMs);
  }

  /** A daemon of this sink (not started); `defaults`: the daemon's own consumer settings, not the harness's shortened group timing and fetch wait. */
  async daemon(instance: string, o: { group?: string; url?: string; netns?: string; httpSocket?: string; httpPort?: number; env?: Record<string, string>; properties?: Record<string, string | number>; extra?: string; defaults?: boolean } = {}): Promise<DaemonProc> {
    const port = o.httpPort ?? (await freePort());
    const t = groupTiming(this.kafka);
    const tuned: Record<string, number> = o.defaults ? {} : { "fetch.wait.max.ms": 10, "session.timeout.ms": t.session, "heartbeat.interval.ms": t.heartbeat };
    const props: Record<string, string | number> = { ...tuned, ...o.properties };
    const path = join(this.ctx.dir, `${this.name}-${instance}.toml`);
    writeFileSync(
      path,
      `[kafka]
bootstrap_servers = "${this.kafka.bootstrap}"
group_id = "${o.group ?? this.group}"
[kafka.properties]
${Object.entries(props)
  .map(([k, v]) => `"${k}" = ${typeof v === "number" ? v : JSON.stringify(v)}`)
  .join("\n")}
[postgres]
url = "${o.url ?? this.url}"
[http]
listen = "127.0.0.1:${port}"
${o.extra ?? ""}
[[mappings]]
topic = "${this.topic}"
table = "${TABLE}"
`,
    );
    const d = new DaemonProc(this.ctx.bin, { name: `${this.name}-${instance}`, config: path, dir: this.ctx.dir, httpPort: port, netns: o.netns, httpSocket: o.httpSocket, env: o.env });
    this.daemons.push(d);
    return d;
  }

  /** Records covered by the group's checkpoints, of all produced so far. */
  async progress(group = this.group): Promise<{ applied: bigint; total: bigint }> {
    const ends = this.workload.ends();
    let total = 0n;
    for (const v of ends.values()) total += v;
    return { applied: await applied(this.sql, `kafka:${group}`, ends), total };
  }

  /** Waits until the group's checkpoints reach the end of every partition. */
  async drained(timeoutMs: number, group = this.group, alive?: () => string | undefined): Promise<number> {
    const t0 = Date.now();
    await waitUntil(
      `${group} to consume every record`,
      async () => {
        const why = alive?.();
        if (why) throw Object.assign(new Error(why), { fatal: true });
        const p = await this.progress(group);
        return p.applied === p.total;
      },
      timeoutMs,
      200,
    );
    return Date.now() - t0;
  }

  /**
   * The invariants after the scenario: (a) the table equals the model, (b) the sampler, (c) dead
   * letters exactly the planted ones, (d) a new consumer group replaying every topic from the start
   * changes no row (bookkeeping included) and dead-letters the same planted records.
   */
  async finish(r: Result, o: { replay?: boolean } = {}): Promise<void> {
    r.invariants.b = this.sampler ? await this.sampler.stop() : na("not sampled");
    r.invariants.a = await checkModel(this.sql, this.workload);
    r.invariants.c = await checkDeadLetters(this.sql, this.stream, this.workload.planted);
    r.invariants.d = o.replay === false ? na("not replayed") : await this.replay();
    r.events = this.workload.events;
  }

  async replay(): Promise<Verdict> {
    const before = await fingerprint(this.sql);
    const group = `${this.group}_replay`;
    const d = await this.daemon("replay", { group });
    d.start();
    const total = (await this.progress(group)).total;
    try {
      await this.drained(this.ctx.mode === "long" ? 1_800_000 : 300_000, group, () => (d.running ? undefined : `the replaying daemon exited: ${d.log().slice(-500)}`));
    } catch (e) {
      await d.kill9();
      return { ok: false, detail: `replay did not complete: ${(e as Error).message}` };
    }
    const consumed = metricValue(await d.metrics(), "cdc_sink_events_consumed_total", { topic: this.topic }) ?? -1;
    const code = await d.stop();
    const after = await fingerprint(this.sql);
    const diff = compareFingerprints(before, after);
    const dead = await checkDeadLetters(this.sql, `kafka:${group}`, this.workload.planted);
    const problems: string[] = [];
    if (diff.length) problems.push(`${diff.length} row(s) changed: ${diff.slice(0, 5).join(", ")}`);
    if (BigInt(consumed) !== total) problems.push(`the replay consumed ${consumed} of ${total} records (the broker dropped some?)`);
    if ("ok" in dead && !dead.ok) problems.push(`replay dead letters: ${dead.detail}`);
    if (code !== 0) problems.push(`the replaying daemon exited with ${code}`);
    return problems.length ? { ok: false, detail: problems.join("; ") } : { ok: true, detail: `group ${group} re-read all ${total} records: ${before.size} rows unchanged (bookkeeping included), the same ${this.workload.planted.size} dead letter(s)` };
  }

  async close(): Promise<void> {
    for (const d of this.daemons) await d.kill9();
    keepLogs(this.name, this.daemons);
    await this.sql.end({ timeout: 2 }).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL-source mode

export class PgRig {
  readonly slot: string;
  readonly stream: string;
  flush: FlushSampler | undefined;
  sampler: PositionSampler | undefined;
  readonly daemons: DaemonProc[] = [];
  #source: Sql;

  private constructor(
    readonly ctx: Ctx,
    readonly name: string,
    readonly sourceCluster: PgCluster,
    readonly sourceUrl: string,
    source: Sql,
    readonly url: string,
    readonly sql: Sql,
  ) {
    this.#source = source;
    this.slot = `chaos_${name}_${process.pid}`;
    this.stream = `pg:${this.slot}`;
  }

  /** the source connection (replaced after the source cluster restarts) */
  get source(): Sql {
    return this.#source;
  }
  async reconnectSource(): Promise<void> {
    await this.#source.end({ timeout: 1 }).catch(() => {});
    this.#source = pg(this.sourceUrl, 4);
  }

  static async create(ctx: Ctx, name: string, o: { settings?: Record<string, string>; analytics?: PgCluster } = {}): Promise<PgRig> {
    const sourceCluster = await startCluster({ settings: { shared_buffers: "64MB", ...o.settings } });
    const sourceUrl = await sourceCluster.createDatabase("src");
    const source = pg(sourceUrl, 4);
    await source.unsafe(SOURCE_DDL);
    const url = await (o.analytics ?? (await ctx.analytics())).createDatabase(`chaos_${name}`);
    const sql = pg(url, 4);
    await sql.unsafe(ANALYTICS_DDL);
    return new PgRig(ctx, name, sourceCluster, sourceUrl, source, url, sql);
  }

  startSamplers(everyMs: number): void {
    this.sampler = new PositionSampler(this.sql, everyMs);
    this.flush = new FlushSampler(() => this.source, () => this.sql, this.slot, this.stream, "src", everyMs);
  }

  async daemon(instance: string, o: { slot?: string; stateSchema?: string; snapshot?: boolean; env?: Record<string, string> } = {}): Promise<DaemonProc> {
    const port = await freePort();
    const path = join(this.ctx.dir, `${this.name}-${instance}.toml`);
    writeFileSync(
      path,
      `[source]
kind = "postgres"
[postgres]
url = "${this.url}"
state_schema = "${o.stateSchema ?? "cdc_sink"}"
[http]
listen = "127.0.0.1:${port}"
[[postgres_sources]]
name = "src"
url = "${this.sourceUrl}"
slot = "${o.slot ?? this.slot}"
snapshot = ${o.snapshot ?? true}
[[mappings]]
source = "src"
source_table = "public.${TABLE}"
table = "${TABLE}"
`,
    );
    const d = new DaemonProc(this.ctx.bin, { name: `${this.name}-${instance}`, config: path, dir: this.ctx.dir, httpPort: port, env: o.env });
    this.daemons.push(d);
    return d;
  }

  /** The source's current WAL position. */
  async walPosition(): Promise<bigint> {
    const [r] = await this.source`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text AS n`;
    return BigInt(r!.n);
  }

  /** Waits until the stored checkpoint reaches `lsn` (everything committed at the source before it is applied). */
  async caughtUp(lsn: bigint, timeoutMs: number, stateSchema = "cdc_sink", slot = this.slot, alive?: () => string | undefined): Promise<number> {
    const t0 = Date.now();
    await waitUntil(
      `the sink to reach the source's WAL position ${lsn}`,
      async () => {
        const why = alive?.();
        if (why) throw new Error(why);
        const snap = await checkpoints(this.sql, `pg:${slot}`, stateSchema).catch(() => new Map<string, bigint>());
        return snap.get("src#snapshot") === 1n && (snap.get("src") ?? 0n) >= lsn;
      },
      timeoutMs,
      200,
    );
    return Date.now() - t0;
  }

  /**
   * (a) analytics equals the source, (b), (c) no dead letters, (d) a new slot and state schema
   * re-reading the source (initial copy, then the stream) changes no data, (e).
   */
  async finish(r: Result): Promise<void> {
    r.invariants.b = this.sampler ? await this.sampler.stop() : na("not sampled");
    r.invariants.e = this.flush ? await this.flush.stop() : na("not sampled");
    r.invariants.a = await checkSource(this.source, this.sql);
    r.invariants.c = await checkDeadLetters(this.sql, this.stream, new Set());
    r.invariants.d = await this.replay();
  }

  async replay(): Promise<Verdict> {
    const before = await fingerprint(this.sql, true);
    const slot = `${this.slot}_replay`;
    const d = await this.daemon("replay", { slot, stateSchema: "cdc_sink_replay" });
    const lsn = await this.walPosition();
    d.start();
    try {
      await this.caughtUp(lsn, this.ctx.mode === "long" ? 1_200_000 : 180_000, "cdc_sink_replay", slot, () => (d.running ? undefined : `the re-reading daemon exited: ${d.log().slice(-500)}`));
    } catch (e) {
      await d.kill9();
      return { ok: false, detail: `re-read did not complete: ${(e as Error).message}` };
    }
    const code = await d.stop();
    const after = await fingerprint(this.sql, true);
    await this.source`SELECT pg_drop_replication_slot(${slot})`.catch(() => {});
    await this.sql.unsafe("DROP SCHEMA IF EXISTS cdc_sink_replay CASCADE").catch(() => {});
    const diff = compareFingerprints(before, after);
    const problems: string[] = [];
    if (diff.length) problems.push(`${diff.length} row(s) changed: ${diff.slice(0, 5).join(", ")}`);
    if (code !== 0) problems.push(`the re-reading daemon exited with ${code}`);
    return problems.length ? { ok: false, detail: problems.join("; ") } : { ok: true, detail: `a new slot and state schema copied and streamed the source again: ${before.size} rows' data unchanged` };
  }

  async close(): Promise<void> {
    for (const d of this.daemons) await d.kill9();
    keepLogs(this.name, this.daemons);
    await this.source.end({ timeout: 1 }).catch(() => {});
    await this.sql.end({ timeout: 1 }).catch(() => {});
  }
}

/** CHAOS_KEEP_LOGS=/dir keeps each daemon's whole log as /dir/<scenario>-<daemon>.log (the run's folder is removed). */
function keepLogs(scenario: string, daemons: DaemonProc[]): void {
  const dir = process.env.CHAOS_KEEP_LOGS;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  for (const d of daemons) {
    try {
      writeFileSync(join(dir, `${scenario}-${d.o.name}.log`), d.fullLog());
    } catch {}
  }
}

export { sleep };
