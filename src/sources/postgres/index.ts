// PostgreSQL source: logical replication (pgoutput) from each source database through a durable
// slot and a publication, created when missing. Decoding happens in decode/pgchanges.ts.
//
// Progress: the checkpoint table holds, per source, the end LSN of the last transaction applied,
// written in the analytics transaction itself; the slot's flush LSN is confirmed only after that
// commit, so it is never past the checkpoint. A restart replays from the slot's confirmed LSN;
// transactions the checkpoint already covers are dropped inside the analytics transaction.
// While the publication is idle (the server's WAL moves, nothing is sent) the end of WAL is
// checkpointed the same way, as an empty transaction at that position: the slot advances and
// retains little WAL, and its confirmed position still never passes the checkpoint — which is how
// setup.ts tells a slot that was re-created or moved behind the sink's back.
import type { Sql } from "postgres";
import { retry, type RetryPolicy, sleep } from "../../backoff.ts";
import type { Config, PgSourceConfig } from "../../config.ts";
import type { PgRecord, PgRecords, PgSourceInfo } from "../../decode/pgchanges.ts";
import { errorCode, errorInfo } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { Metrics } from "../../metrics.ts";
import type { SchemaChange, Target } from "../../model.ts";
import type { CheckpointStore, CommittedPart, Source } from "../../pipeline.ts";
import type { BulkLoader } from "../../sink/load.ts";
import { ensurePublication, openSource, pgStream, prepareSlot, SLOT_UNUSABLE_CODES, slotName, SlotUnusable } from "./setup.ts";
import { startSnapshot } from "./snapshot.ts";
import { createReplicationStream, isSlotInvalidated, type ReplicationStream } from "./stream.ts";

/** SQLSTATE object_in_use: START_REPLICATION on a slot another connection streams from. */
const SLOT_IN_USE = "55006";
/** How often a standby tries the slot: it takes over within about this long after the active instance is gone. */
const STANDBY_POLL_MS = 1000;

/** The reader's queue pauses the replication stream above HIGH records and resumes below LOW. */
const QUEUE_HIGH = 20_000;
const QUEUE_LOW = 5_000;
/** An idle source checkpoints the server's end of WAL at most this often. */
const IDLE_ADVANCE_MS = 1000;
/** After a fatal slot error, the daemon stays up this long before it exits (a last scrape of its metrics). */
const FATAL_LINGER_MS = 1000;

/** One source database: its slot's stream and snapshot feeding a bounded queue. */
class SlotReader {
  readonly stream: string;
  readonly slot: string;
  #items: PgRecord[] = [];
  #head = 0;
  /** inside a transaction handed to the pipeline, not yet at its COMMIT */
  #inTxn = false;
  /** end LSN of the last COMMIT handed to the pipeline */
  #readEnd = 0n;
  /** end LSN the analytics database committed */
  #acked = 0n;
  #snapshotDone = true;
  /** the snapshot is being copied: streamed changes wait (they may touch rows the copy brings) */
  #copying = false;
  #closing = new AbortController();
  #walTimer: ReturnType<typeof setInterval> | undefined;
  admin!: Sql;
  replication!: ReplicationStream;
  wake: (() => void) | undefined;
  /** while another instance holds the slot: why this one waits */
  standby: string | undefined;
  /** the slot cannot be streamed without a gap: the pipeline stops with it */
  fatal: SlotUnusable | undefined;
  /** the replication stream is inside a transaction (received, not necessarily taken) */
  #receivingTxn = false;
  /** an empty transaction queued at this position: the first checkpoint of a new slot, or the idle end of WAL */
  #marker: bigint | undefined;
  #markerAt = 0;

  constructor(
    readonly cfg: PgSourceConfig,
    readonly tables: Map<string, Target>,
    readonly loader: BulkLoader,
    readonly checkpoints: CheckpointStore,
    readonly policy: RetryPolicy,
    readonly metrics: Metrics,
    readonly log: Logger,
  ) {
    this.stream = pgStream(cfg);
    this.slot = slotName(cfg);
  }

  get queued(): number {
    return this.#items.length - this.#head;
  }

  push(r: PgRecord): void {
    this.#items.push(r);
    if (this.queued > QUEUE_HIGH) this.replication?.pause();
    this.wake?.();
  }

  /** Takes up to `max` records, noting the transaction boundaries the pipeline has been handed. */
  take(max: number, out: PgRecord[]): number {
    const n = this.#copying ? 0 : Math.min(max, this.queued);
    for (let i = 0; i < n; i++) {
      const r = this.#items[this.#head++]!;
      if (r.kind === "xlog") {
        if (r.msg.tag === "begin") this.#inTxn = true;
        else if (r.msg.tag === "commit") {
          this.#inTxn = false;
          this.#readEnd = r.msg.endLsn;
        }
      } else if (r.kind === "snapshot-done") {
        this.#snapshotDone = true;
        this.log.info("snapshot complete");
      }
      out.push(r);
    }
    if (this.#head > 4096 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    if (this.queued < QUEUE_LOW) this.replication.resume();
    return n;
  }

  /** Committed in analytics up to here: what the slot may confirm. */
  flushPosition(): bigint {
    return this.#acked;
  }

  /** An empty transaction ending at `lsn`: the decoder moves this source's checkpoint there with the next batch. */
  #pushMarker(lsn: bigint): void {
    this.#marker = lsn;
    this.#markerAt = Date.now();
    this.push({ kind: "xlog", source: this.cfg.name, msg: { tag: "commit", commitLsn: lsn, endLsn: lsn, commitTime: Date.now() } });
  }

  /**
   * Nothing in flight and the server's WAL moved past the checkpoint (changes of unpublished tables,
   * other databases): checkpoint the end of WAL. Every transaction sent later commits after it.
   */
  idleAdvance(): void {
    const walEnd = this.replication?.walEnd ?? 0n;
    if (walEnd <= this.#acked || this.#receivingTxn || this.queued || this.#inTxn || this.#readEnd !== this.#acked || !this.#snapshotDone || this.#copying) return;
    if ((this.#marker !== undefined && this.#marker > this.#acked) || Date.now() - this.#markerAt < IDLE_ADVANCE_MS) return;
    this.#pushMarker(walEnd);
  }

  /** The slot cannot be resumed without a gap: recorded, counted, and thrown from the next read. */
  setFatal(e: SlotUnusable): void {
    if (this.fatal) return;
    this.fatal = e;
    this.metrics.errors.inc({ stage: "source", code: e.code });
    this.log.error("replication slot unusable: stopping, never resuming with a gap", { slot: this.slot, reason: e.reason, code: e.code, error: e.message });
    this.wake?.();
  }

  async start(): Promise<void> {
    await this.admin?.end({ timeout: 1 }).catch(() => {});
    this.admin = openSource(this.cfg);
    await ensurePublication(this.admin, this.cfg, [...this.tables.keys()], this.log);
    const stored = await this.checkpoints.load(this.stream);
    const repl = openSource(this.cfg, { replication: true });
    try {
      await this.startStreaming(repl, stored);
    } catch (e) {
      await repl.end({ timeout: 1 }).catch(() => {});
      if (e instanceof SlotUnusable) {
        this.setFatal(e);
        await sleep(FATAL_LINGER_MS);
      }
      throw e;
    }
  }

  /** Prepares the slot on `repl`, copies the snapshot if one is due, and streams. */
  async startStreaming(repl: Sql, stored: Map<string, bigint>): Promise<void> {
    const slot = await prepareSlot(this.admin, repl, this.cfg, stored, this.log);
    this.#acked = slot.from;
    this.#readEnd = slot.from;
    this.#marker = undefined;
    this.replication = createReplicationStream({
      cfg: this.cfg,
      retry: this.policy,
      metrics: this.metrics,
      log: this.log,
      onData: (d) => {
        if (d.kind !== "xlog") return;
        if (d.msg.tag === "begin") this.#receivingTxn = true;
        else if (d.msg.tag === "commit") this.#receivingTxn = false;
        this.push({ kind: "xlog", source: this.cfg.name, msg: d.msg });
      },
      onStart: (from) => {
        // what the previous connection queued is sent again from the confirmed position (a transaction
        // cut off mid-way in full)
        this.#items = this.#items.slice(this.#head).filter((r) => r.kind === "snapshot-done");
        this.#head = 0;
        this.#inTxn = false;
        this.#receivingTxn = false;
        this.#readEnd = from;
        this.push({ kind: "restart", source: this.cfg.name, from });
        // a new slot's consistent point becomes the checkpoint with the first batch (after the copy)
        if (slot.created && this.#acked <= slot.from && (this.#marker === undefined || this.#marker === slot.from)) this.#pushMarker(slot.from);
        else this.#marker = undefined;
      },
      flushPosition: () => this.flushPosition(),
      onIdle: () => this.idleAdvance(),
      onFatal: (e) => this.setFatal(new SlotUnusable(this.slot, "invalidated", `replication slot ${this.slot} was invalidated while streaming (${errorInfo(e).error}): the source removed WAL the sink had not read yet (max_slot_wal_keep_size exceeded); resuming would skip it.`)),
    });
    let copy: Promise<void> | undefined;
    if (slot.snapshot) {
      this.#snapshotDone = false;
      this.#copying = true;
      copy = (await startSnapshot({ cfg: this.cfg, stream: this.stream, snapshot: slot.snapshot, tables: this.tables, loader: this.loader, metrics: this.metrics, log: this.log })).done;
    }
    await this.replication.start(repl, slot.from);
    copy?.then(
      () => {
        this.#copying = false;
        // committed with the next batch: a restart before that copies again, position-guarded
        this.push({ kind: "snapshot-done", source: this.cfg.name });
      },
      (e) => void this.snapshotFailed(e),
    );
    this.#walTimer = setInterval(() => void this.updateWalRetained(), 10_000);
    void this.updateWalRetained();
  }

  /** The copy failed (the analytics database went away, say): start over; the slot is re-created and the rows merged. */
  async snapshotFailed(e: unknown): Promise<void> {
    this.metrics.errors.inc({ stage: "source", code: errorCode(e) });
    this.log.error("snapshot failed; starting it again", errorInfo(e));
    await this.replication.close();
    if (this.#walTimer) clearInterval(this.#walTimer);
    await retry(() => this.start(), {
      policy: this.policy,
      signal: this.#closing.signal,
      onError: (err, attempt, waitMs) => this.log.error("starting replication failed; retrying", { ...errorInfo(err), attempt, retryInMs: waitMs }),
    }).catch(() => {});
  }

  acknowledge(parts: CommittedPart[]): void {
    for (const p of parts) if (p.stream === this.stream && p.part === this.cfg.name && p.next > this.#acked) this.#acked = p.next;
    this.replication.sendStatus();
  }

  async updateWalRetained(): Promise<void> {
    try {
      const [r] = await this.admin`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained, wal_status, safe_wal_size::text AS safe FROM pg_replication_slots WHERE slot_name = ${this.slot}`;
      if (!r) return;
      if (r.wal_status === "lost") {
        this.setFatal(new SlotUnusable(this.slot, "invalidated", `replication slot ${this.slot} was invalidated while streaming (wal_status lost): the source removed WAL the sink had not read yet (max_slot_wal_keep_size exceeded); resuming would skip it.`));
        return;
      }
      if (r.wal_status === "unreserved") this.log.warn("replication slot is about to be invalidated: its WAL is beyond max_slot_wal_keep_size", { slot: this.slot, safeWalSizeBytes: r.safe });
      const retained = Number(r.retained);
      this.metrics.walRetained.set({ slot: this.slot }, retained);
      if (retained > this.cfg.wal_retained_warn_bytes) this.log.warn("replication slot retains a lot of WAL", { slot: this.slot, retainedBytes: retained, thresholdBytes: this.cfg.wal_retained_warn_bytes });
    } catch (e) {
      this.log.debug("reading retained WAL failed", errorInfo(e));
    }
  }

  async close(): Promise<void> {
    this.#closing.abort();
    if (this.#walTimer) clearInterval(this.#walTimer);
    await this.replication?.close();
    await this.admin?.end({ timeout: 2 }).catch(() => {});
  }
}

/** The source-side facts the decoder needs about each source. */
export const pgSourceInfo = (config: Config): PgSourceInfo[] =>
  config.postgres_sources.map((s) => ({ name: s.name, stream: pgStream(s), newColumns: s.new_columns }));

export function createPgSource(deps: { config: Config; targets: Target[]; checkpoints: CheckpointStore; loader: BulkLoader; metrics: Metrics; log: Logger }): Source<PgRecords> {
  const { config, metrics } = deps;
  const policy = { initialMs: config.retry.initial_ms, maxMs: config.retry.max_ms };
  const readers = config.postgres_sources.map((s) => {
    const tables = new Map<string, Target>();
    for (const t of deps.targets) if (t.mapping.source === s.name) tables.set(t.mapping.source_table!, t);
    return new SlotReader(s, tables, deps.loader, deps.checkpoints, policy, metrics, deps.log.child({ source: s.name }));
  });
  const byName = new Map(readers.map((r) => [r.cfg.name, r]));
  const take = (max: number): PgRecords => {
    const items: PgRecord[] = [];
    let n = 0;
    for (const r of readers) n += r.take(max - n, items);
    return { count: n, items };
  };
  return {
    kind: "postgres",
    async start(signal: AbortSignal) {
      for (const r of readers)
        for (;;) {
          try {
            await retry(() => r.start(), {
              policy,
              signal,
              onError(e, attempt, waitMs) {
                // a setup problem (wal_level, privileges) or a slot with a gap does not fix itself; a slot in use is waited for
                if (errorCode(e) === "SOURCE_SETUP" || errorCode(e) === SLOT_IN_USE || SLOT_UNUSABLE_CODES.has(errorCode(e))) throw e;
                if (isSlotInvalidated(e)) {
                  r.setFatal(new SlotUnusable(r.slot, "invalidated", `replication slot ${r.slot} was invalidated: ${errorInfo(e).error}`));
                  throw r.fatal;
                }
                metrics.retries.inc({ stage: "source" });
                r.log.error("starting replication failed; retrying", { ...errorInfo(e), attempt, retryInMs: waitMs });
              },
            });
            if (r.standby) r.log.info("slot free: this instance takes over", { slot: r.slot });
            r.standby = undefined;
            metrics.standby.set({ slot: r.slot }, 0);
            break;
          } catch (e) {
            if (errorCode(e) !== SLOT_IN_USE || signal.aborted) throw e;
            // another instance streams from the slot: wait as a standby, not ready, polling it
            if (!r.standby) r.log.warn("the replication slot is active in another instance; waiting as a standby", { slot: r.slot, ...errorInfo(e) });
            r.standby = errorInfo(e).error;
            metrics.standby.set({ slot: r.slot }, 1);
            await sleep(STANDBY_POLL_MS, signal);
          }
        }
    },
    async read(max: number, waitMs: number): Promise<PgRecords> {
      const fatal = readers.find((r) => r.fatal)?.fatal;
      if (fatal) {
        await sleep(FATAL_LINGER_MS);
        throw fatal;
      }
      const first = take(max);
      if (first.count || waitMs <= 0) return first;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          for (const r of readers) r.wake = undefined;
          resolve();
        };
        const t = setTimeout(done, waitMs);
        for (const r of readers) r.wake = done;
      });
      return take(max);
    },
    async describe(change: SchemaChange): Promise<SchemaChange> {
      const reader = byName.get(change.target.mapping.source!)!;
      const add = [];
      for (const c of change.add) {
        const [{ type }] = (await reader.admin`SELECT format_type(${c.typeOid!}::oid, ${c.typmod!}::int) AS type`) as unknown as [{ type: string }];
        add.push({ ...c, sqlType: type });
      }
      return { target: change.target, add };
    },
    async acknowledge(parts: CommittedPart[]) {
      for (const r of readers) r.acknowledge(parts);
    },
    status() {
      const fatal = readers.find((r) => r.fatal);
      if (fatal) return { ready: false, reason: `replication slot ${fatal.slot} unusable (${fatal.fatal!.reason}): ${fatal.fatal!.message}`, fatal: fatal.fatal!.message };
      const standby = readers.find((r) => r.standby);
      if (standby) return { ready: false, reason: `standby: replication slot ${standby.slot} is active in another instance (${standby.standby})` };
      const down = readers.filter((r) => !r.replication?.streaming).map((r) => r.cfg.name);
      return down.length ? { ready: false, reason: `replication not streaming: ${down.join(", ")}` } : { ready: true };
    },
    async close() {
      for (const r of readers) await r.close();
      metrics.up.set({}, 0);
    },
  };
}
