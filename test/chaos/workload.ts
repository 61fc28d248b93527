// Workloads and their models. Kafka: Debezium events (create, update, delete followed by its tombstone)
// of one table over many partitions, with a few planted undecodable records, produced at a chosen
// rate; the model is every key's final row and the coordinates of the planted records. PostgreSQL:
// a writer committing transactions of inserts, updates and deletes on a source table; the model is
// the source table itself.
import type { Sql } from "postgres";
import type { KafkaEnv, Rng } from "./env.ts";
import { sleep } from "./env.ts";

export const TABLE = "items";
export const ANALYTICS_DDL = `CREATE TABLE IF NOT EXISTS ${TABLE} (id bigint PRIMARY KEY, v bigint, note text,
  _cdc_commit_lsn numeric(20,0), _cdc_lsn numeric(20,0), _cdc_synced_at timestamptz, _cdc_deleted_at timestamptz)`;
export const SOURCE_DDL = `CREATE TABLE IF NOT EXISTS ${TABLE} (id bigint PRIMARY KEY, v bigint, note text)`;

export interface KafkaWorkloadOptions {
  topic: string;
  partitions: number;
  keys: number;
  /** one planted undecodable record per this many events (0: none) */
  poisonEvery: number;
}

type Message = { key: string; value: string | null; partition: number };

/** Changes generated ahead (`KafkaWorkload.prepare`): their messages, tombstones and planted records included. */
export interface Prepared {
  msgs: Message[];
  events: number;
}

export interface Row {
  v: string;
  note: string;
}

/** The generator and its model: what every key must end as, and which records must be dead letters. */
export class KafkaWorkload {
  /** final row per key; null: deleted */
  readonly model = new Map<number, Row | null>();
  /** `<topic>/<partition>@<offset>` of every planted record */
  readonly planted = new Set<string>();
  /** records produced per partition (the next offset) */
  readonly produced: number[];
  events = 0;
  tombstones = 0;
  deletes = 0;
  #lsn = 40_000_000n;
  #lastCommit = 39_999_000n;
  #txId = 1000;
  #sinceCommit = 0;
  #poisonIn: number;

  constructor(
    readonly kafka: KafkaEnv,
    readonly o: KafkaWorkloadOptions,
    readonly rng: Rng,
  ) {
    this.produced = new Array(o.partitions).fill(0);
    this.#poisonIn = o.poisonEvery ? rng.int(1, o.poisonEvery) : Infinity;
  }

  /** Where each partition ends: checkpoint parts and their positions once everything is consumed. */
  ends(): Map<string, bigint> {
    return new Map(this.produced.map((n, p) => [`${this.o.topic}/${p}`, BigInt(n)]));
  }

  #envelope(op: "c" | "u" | "d", id: number, after: Row | null): string {
    this.#lsn += 64n;
    const lsn = this.#lsn;
    const ts = Date.now();
    const value = {
      before: op === "d" ? { id, v: 0, note: "" } : null,
      after: after ? { id, v: Number(after.v), note: after.note } : null,
      source: {
        version: "3.6.1.Final",
        connector: "postgresql",
        name: "chaos",
        ts_ms: ts,
        snapshot: "false",
        db: "chaos",
        sequence: JSON.stringify([String(this.#lastCommit), String(lsn)]),
        schema: "public",
        table: TABLE,
        txId: this.#txId,
        lsn: Number(lsn),
        xmin: null,
      },
      op,
      ts_ms: ts + 2,
      transaction: null,
    };
    // transactions of a few changes each: the commit position moves between them
    if (++this.#sinceCommit >= this.rng.int(1, 8)) {
      this.#lastCommit = lsn + 32n;
      this.#lsn += 64n;
      this.#txId++;
      this.#sinceCommit = 0;
    }
    return JSON.stringify(value);
  }

  /** The next `n` changes as produce calls (a delete brings its tombstone). */
  #generate(n: number): Message[] {
    const out: Message[] = [];
    const push = (partition: number, key: string, value: string | null) => {
      out.push({ key, value, partition });
      this.produced[partition]!++;
    };
    for (let i = 0; i < n; i++) {
      const id = this.rng.int(1, this.o.keys);
      const partition = id % this.o.partitions;
      const key = JSON.stringify({ id });
      if (--this.#poisonIn <= 0) {
        this.#poisonIn = this.rng.int(Math.ceil(this.o.poisonEvery / 2), Math.ceil(this.o.poisonEvery * 1.5));
        this.planted.add(`${this.o.topic}/${partition}@${this.produced[partition]}`);
        push(partition, key, `{"before":null,"after":{"id":${id},"v":`);
      }
      const cur = this.model.get(id);
      this.events++;
      if (!cur) {
        const row = { v: String(this.rng.int(0, 1e9)), note: `n${this.events}` };
        this.model.set(id, row);
        push(partition, key, this.#envelope("c", id, row));
      } else if (this.rng.chance(0.22)) {
        this.model.set(id, null);
        this.deletes++;
        push(partition, key, this.#envelope("d", id, null));
        this.tombstones++;
        push(partition, key, null);
      } else {
        const row = { v: String(this.rng.int(0, 1e9)), note: `n${this.events}` };
        this.model.set(id, row);
        push(partition, key, this.#envelope("u", id, row));
      }
    }
    return out;
  }

  /** Produces `n` changes and waits for their delivery. */
  async produce(n: number): Promise<void> {
    await this.#send(this.#generate(n));
  }

  async #send(msgs: Message[]): Promise<void> {
    await this.kafka.producer.produce(this.o.topic, msgs);
    await this.#delivered();
  }

  /** Waits until everything enqueued is delivered; throws on any failed delivery. */
  async #delivered(): Promise<void> {
    const r = await this.kafka.producer.flush(120_000);
    if (r.failed.length) throw new Error(`produce failed: ${JSON.stringify(r.failed.slice(0, 3))}`);
  }

  /**
   * The next `n` changes generated now, the model moved on, for `offer` to produce: a burst offered
   * that way measures what reaches the broker, not this process's JSON encoding. Offer every one.
   */
  prepare(n: number): Prepared {
    const start = this.events;
    const msgs = this.#generate(n);
    return { msgs, events: this.events - start };
  }

  /**
   * Produces a prepared batch at `perSecond` changes per second, in chunks every 100 ms, and waits
   * for its delivery once at the end (a wait per chunk would pace the burst by the broker's round
   * trip); resolves with the rate achieved, the last delivery included.
   */
  async offer(p: Prepared, perSecond: number): Promise<{ events: number; seconds: number }> {
    const rate = (perSecond * p.msgs.length) / Math.max(1, p.events);
    const t0 = performance.now();
    await paced(p.msgs.length, rate, async (from, n) => {
      const k = await this.kafka.producer.produce(this.o.topic, p.msgs.slice(from, from + n));
      if (k < 1) throw new Error(`produce: none of ${n} messages enqueued`);
      return k;
    });
    await this.#delivered();
    return { events: p.events, seconds: (performance.now() - t0) / 1000 };
  }

  /**
   * Offers `total` changes at `perSecond` (in chunks every 100 ms) until done or `signal` aborts;
   * resolves with the rate achieved.
   */
  async feed(total: number, perSecond: number, signal?: AbortSignal): Promise<{ events: number; seconds: number }> {
    const start = this.events;
    const seconds = await paced(
      total,
      perSecond,
      async (_, n) => {
        const k = Math.min(n, 20_000);
        await this.produce(k);
        return k;
      },
      signal,
    );
    return { events: this.events - start, seconds };
  }
}

/**
 * Calls `send(from, n)` for the next `n` of `total` units as they fall due at `perSecond`, in whole
 * chunks every 100 ms (a chunk per tick of a few milliseconds would make batches of one record per
 * partition, and librdkafka's mock answers a fetch with one batch per partition, so a consumer
 * behind could never catch up with it); `send` may take fewer and say so. Resolves with the seconds taken.
 */
async function paced(total: number, perSecond: number, send: (from: number, n: number) => Promise<number | void>, signal?: AbortSignal): Promise<number> {
  const t0 = performance.now();
  const chunk = Math.max(1, Math.ceil(perSecond / 10));
  let done = 0;
  while (done < total && !signal?.aborted) {
    const due = Math.min(total, Math.ceil(((performance.now() - t0) / 1000) * perSecond) + chunk) - done;
    if (due >= Math.min(chunk, total - done)) done += (await send(done, due)) ?? due;
    else await sleep(10);
  }
  return (performance.now() - t0) / 1000;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL-source writer

export interface WriterStats {
  transactions: number;
  changes: number;
  errors: number;
}

/**
 * Commits transactions of 1–`maxOps` inserts, updates and deletes on the source table at about
 * `txPerSecond` until stopped. Errors (the source restarting) are counted and the writer goes on.
 */
export function startWriter(sql: Sql, rng: Rng, o: { txPerSecond: number; maxOps: number; keys: number }) {
  const stats: WriterStats = { transactions: 0, changes: 0, errors: 0 };
  const stop = new AbortController();
  const done = (async () => {
    const t0 = performance.now();
    while (!stop.signal.aborted) {
      const due = ((performance.now() - t0) / 1000) * o.txPerSecond;
      if (stats.transactions >= due) {
        await sleep(5);
        continue;
      }
      const ops = rng.int(1, o.maxOps);
      const statements: string[] = [];
      for (let i = 0; i < ops; i++) {
        const id = rng.int(1, o.keys);
        const r = rng.next();
        if (r < 0.45) statements.push(`INSERT INTO ${TABLE} (id, v, note) VALUES (${id}, ${rng.int(0, 1e9)}, 'w${stats.transactions}') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, note = EXCLUDED.note`);
        else if (r < 0.8) statements.push(`UPDATE ${TABLE} SET v = v + 1, note = 'u${stats.transactions}' WHERE id = ${id}`);
        else statements.push(`DELETE FROM ${TABLE} WHERE id = ${id}`);
      }
      try {
        await sql.begin(async (tx) => {
          for (const s of statements) await tx.unsafe(s);
        });
        stats.transactions++;
        stats.changes += ops;
      } catch {
        stats.errors++;
        await sleep(200);
      }
    }
  })();
  return {
    stats,
    async stop(): Promise<WriterStats> {
      stop.abort();
      await done;
      return stats;
    },
  };
}
