// PostgreSQL source: logical replication (pgoutput) from each source database through a durable
// slot and a publication, created when missing.
//
// Positions. A streamed change is positioned (commit LSN of its transaction, index within it):
// transactions arrive in commit order, so this orders every change of a key as the source
// committed them. The initial snapshot is read in the snapshot the slot exported at its
// consistent point S; it holds exactly the transactions that committed before S, and every
// streamed transaction commits after S. So snapshot rows get position (0, S): below any streamed
// change, whatever order the two arrive in. A row changed during the snapshot ends with its
// streamed value; a row deleted during it leaves a tombstone newer than its snapshot row.
//
// Progress. The checkpoint table holds, per source, the end LSN of the last transaction applied,
// written in the analytics transaction itself; the slot's flush LSN is confirmed only after that
// commit. A restart replays from the slot's confirmed LSN; transactions the checkpoint already
// covers are dropped inside the analytics transaction.
import postgres, { type Sql } from "postgres";
import { type Batch, type Change, type Coord, Kind, partKey, type Target } from "../batch.ts";
import type { Config, PgSourceConfig } from "../config.ts";
import { connectionOptions } from "../config.ts";
import { formatLsn, parseLsn, parsePgOutput, type PgOutputMessage, type Relation } from "../decode/pgoutput.ts";
import { errorInfo, type Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { Source } from "../pipeline.ts";
import type { Applier, ApplyResult } from "../sink/apply.ts";
import { introspectTable, quoteIdent } from "../sink/schema.ts";
import { resolveTarget } from "../sink/targets.ts";

const QUEUE_HIGH = 20_000;
const QUEUE_LOW = 5_000;

export class SourceSetupError extends Error {
  override name = "SourceSetupError";
  readonly code = "SOURCE_SETUP";
}

type Item = { kind: "msg"; msg: PgOutputMessage } | { kind: "row"; target: Target; values: Record<string, string | null> } | { kind: "snapshot-done" };

function open(c: PgSourceConfig, extra: Record<string, unknown> = {}): Sql {
  const { url, options } = connectionOptions(c);
  const opts = { ...options, max: 1, onnotice: () => {}, idle_timeout: null, max_lifetime: null, fetch_types: false, ...extra };
  return (url ? postgres(url, opts as never) : postgres(opts as never)) as Sql;
}

/** Source-side preflight: wal_level, replication privilege, replica identity. Returns problems with their fixes. */
export async function sourceProblems(admin: Sql, tables: string[]): Promise<string[]> {
  const out: string[] = [];
  const [{ wal_level }] = (await admin`SHOW wal_level`) as unknown as [{ wal_level: string }];
  if (wal_level !== "logical") out.push(`wal_level is ${wal_level}: set wal_level = logical (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL`);
  const [role] = await admin`SELECT rolreplication OR rolsuper AS ok, current_user AS name FROM pg_roles WHERE rolname = current_user`;
  if (!role?.ok) out.push(`role ${role?.name} lacks the REPLICATION attribute (ALTER ROLE ${role?.name} REPLICATION)`);
  for (const t of tables) {
    const [r] = await admin`SELECT c.relreplident AS ident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk
      FROM pg_class c WHERE c.oid = to_regclass(${t})`;
    if (!r) out.push(`source table ${t} does not exist`);
    else if (r.ident === "n") out.push(`${t} has REPLICA IDENTITY NOTHING: deletes carry no key (ALTER TABLE ${t} REPLICA IDENTITY DEFAULT)`);
    else if (r.ident === "d" && !r.has_pk) out.push(`${t} has no primary key: updates and deletes carry no key (add one, or ALTER TABLE ${t} REPLICA IDENTITY FULL)`);
  }
  return out;
}

/** What `check` reports about a source's slot and publication (created on first run when missing). */
export async function slotState(admin: Sql, c: PgSourceConfig): Promise<string[]> {
  const slot = c.slot ?? `cdc_sink_${c.name}`;
  const publication = c.publication ?? `cdc_sink_${c.name}`;
  const out: string[] = [];
  const [s] = await admin`SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained, wal_status
    FROM pg_replication_slots WHERE slot_name = ${slot}`;
  out.push(s ? `slot ${slot}: ${s.active ? "active" : "inactive"}, retains ${s.retained} bytes of WAL (${s.wal_status})` : `slot ${slot}: missing, created on first run`);
  const tables = await admin`SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = ${publication} ORDER BY 1`;
  const [p] = await admin`SELECT 1 FROM pg_publication WHERE pubname = ${publication}`;
  out.push(p ? `publication ${publication}: ${tables.map((r) => r.t).join(", ") || "no tables"}` : `publication ${publication}: missing, created on first run`);
  return out;
}

class SlotReader {
  readonly stream: string;
  readonly slot: string;
  readonly publication: string;
  readonly byTable = new Map<string, Target>();
  readonly relations = new Map<number, { rel: Relation; target: Target | undefined }>();
  readonly queue: Item[] = [];
  admin!: Sql;
  repl: Sql | undefined;
  copy: (NodeJS.ReadableStream & NodeJS.WritableStream & { pause(): void; resume(): void; destroy(): void }) | undefined;
  streaming = false;
  paused = false;
  closed = false;
  snapshotDone = true;
  snapshotLsn = 0;
  txn: { commitLsn: number; commitTime: number; seq: number } | undefined;
  lastReadEnd = 0n;
  lastAcked = 0n;
  lastWalEnd = 0n;
  wake: (() => void) | undefined;
  warnedColumns = new Set<string>();
  /** source columns to add to analytics before anything after their relation message is read */
  pendingColumns: Array<{ target: Target; name: string; typeOid: number; typmod: number }> = [];
  walTimer: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly cfg: PgSourceConfig,
    targets: Target[],
    readonly applier: Applier,
    readonly analytics: Sql,
    readonly metrics: Metrics,
    readonly log: Logger,
  ) {
    this.slot = cfg.slot ?? `cdc_sink_${cfg.name}`;
    this.publication = cfg.publication ?? `cdc_sink_${cfg.name}`;
    this.stream = `pg:${this.slot}`;
    for (const t of targets) this.byTable.set(t.mapping.source_table!, t);
  }

  push(item: Item): void {
    this.queue.push(item);
    if (!this.paused && this.queue.length > QUEUE_HIGH && this.copy) {
      this.paused = true;
      this.copy.pause();
    }
    this.wake?.();
  }

  async start(): Promise<void> {
    this.admin = open(this.cfg);
    const tables = [...this.byTable.keys()];
    const problems = await sourceProblems(this.admin, tables);
    if (problems.length) throw new SourceSetupError(`source ${this.cfg.name}: ${problems.join("; ")}`);
    const pubTables = (await this.admin`SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = ${this.publication}`).map((r) => r.t as string);
    const [pub] = await this.admin`SELECT 1 FROM pg_publication WHERE pubname = ${this.publication}`;
    const list = (ts: string[]) => ts.map((t) => t.split(".").map(quoteIdent).join(".")).join(", ");
    if (!pub) {
      await this.admin.unsafe(`CREATE PUBLICATION ${quoteIdent(this.publication)} FOR TABLE ${list(tables)}`);
      this.log.info("publication created", { source: this.cfg.name, publication: this.publication, tables });
    } else {
      const missing = tables.filter((t) => !pubTables.includes(t));
      if (missing.length) await this.admin.unsafe(`ALTER PUBLICATION ${quoteIdent(this.publication)} ADD TABLE ${list(missing)}`);
    }
    const stored = await this.applier.checkpoints(this.stream);
    const checkpoint = BigInt(stored.get(this.cfg.name) ?? 0);
    const snapshotMarked = stored.get(`${this.cfg.name}#snapshot`) === 1;
    const [slot] = await this.admin`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = ${this.slot}`;
    this.repl = open(this.cfg, { connection: { replication: "database", application_name: `cdc-sink:${this.cfg.name}` } });
    let start: bigint;
    if (slot && (snapshotMarked || !this.cfg.snapshot)) {
      start = checkpoint > parseLsn(slot.lsn) ? checkpoint : parseLsn(slot.lsn);
    } else {
      // no slot yet, or a snapshot that never completed: (re)create the slot and copy existing rows
      if (slot) await this.admin`SELECT pg_drop_replication_slot(${this.slot})`;
      const [created] = await this.repl.unsafe(`CREATE_REPLICATION_SLOT ${quoteIdent(this.slot)} LOGICAL pgoutput ${this.cfg.snapshot ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT"}`);
      start = parseLsn(created!.consistent_point);
      this.log.info("replication slot created", { source: this.cfg.name, slot: this.slot, consistentPoint: created!.consistent_point });
      if (this.cfg.snapshot) await this.startSnapshot(created!.snapshot_name, Number(start));
    }
    this.lastAcked = start;
    this.lastReadEnd = start;
    await this.startStreaming(start);
    this.walTimer = setInterval(() => void this.updateWalRetained(), 10_000);
    void this.updateWalRetained();
  }

  /** Imports the slot's exported snapshot before START_REPLICATION (which would invalidate it), then copies in the background. */
  async startSnapshot(snapshotName: string, lsn: number): Promise<void> {
    this.snapshotDone = false;
    this.snapshotLsn = lsn;
    const reader = open(this.cfg);
    let imported!: () => void;
    const ready = new Promise<void>((r) => (imported = r));
    const task = reader.begin("ISOLATION LEVEL REPEATABLE READ READ ONLY", async (tx) => {
      await tx.unsafe(`SET TRANSACTION SNAPSHOT '${snapshotName}'`);
      imported();
      for (const [table, target] of this.byTable) {
        const cols = [...target.columns.keys()];
        const q = `SELECT ${cols.map((c) => `${quoteIdent(c)}::text`).join(", ")} FROM ${table.split(".").map(quoteIdent).join(".")}`;
        let n = 0;
        for await (const rows of tx.unsafe(q).cursor(2000)) {
          for (const r of rows) this.push({ kind: "row", target, values: r as Record<string, string | null> });
          n += rows.length;
          while (this.queue.length > QUEUE_HIGH && !this.closed) await new Promise((r) => setTimeout(r, 5));
          if (this.closed) return;
        }
        this.log.info("snapshot copied", { source: this.cfg.name, table, rows: n });
      }
    });
    task.then(
      () => {
        this.push({ kind: "snapshot-done" });
        void reader.end();
      },
      (e) => {
        this.log.error("snapshot failed; it restarts with the next run", { source: this.cfg.name, ...errorInfo(e) });
        this.metrics.errors.inc({ stage: "source", code: String(errorInfo(e).code ?? "SNAPSHOT") });
        void reader.end();
      },
    );
    await ready;
  }

  async startStreaming(from: bigint): Promise<void> {
    const copy = (await this.repl!.unsafe(
      `START_REPLICATION SLOT ${quoteIdent(this.slot)} LOGICAL ${formatLsn(from)} (proto_version '1', publication_names '${this.publication}')`,
    ).writable()) as unknown as NonNullable<SlotReader["copy"]>;
    this.copy = copy;
    this.streaming = true;
    this.paused = false;
    this.metrics.up.set({}, 1);
    this.log.info("streaming", { source: this.cfg.name, slot: this.slot, from: formatLsn(from) });
    copy.on("data", (d: Buffer) => this.onData(d));
    copy.on("error", (e: Error) => this.log.warn("replication stream error", { source: this.cfg.name, ...errorInfo(e) }));
    copy.on("close", () => this.onClose());
  }

  onData(d: Buffer): void {
    if (d[0] === 0x77) {
      // XLogData: 'w', start LSN, end of WAL, send time, pgoutput message
      const walEnd = d.readBigUInt64BE(9);
      if (walEnd > this.lastWalEnd) this.lastWalEnd = walEnd;
      this.push({ kind: "msg", msg: parsePgOutput(d.subarray(25)) });
    } else if (d[0] === 0x6b) {
      // keepalive: 'k', end of WAL, send time, reply requested
      const walEnd = d.readBigUInt64BE(1);
      if (walEnd > this.lastWalEnd) this.lastWalEnd = walEnd;
      if (d[17]) this.sendStatus();
    }
  }

  onClose(): void {
    this.streaming = false;
    this.copy = undefined;
    if (this.closed) return;
    this.metrics.errors.inc({ stage: "source", code: "REPLICATION_CLOSED" });
    this.log.error("replication connection lost; reconnecting", { source: this.cfg.name });
    void this.reconnect();
  }

  async reconnect(): Promise<void> {
    for (let attempt = 1; !this.closed; attempt++) {
      await new Promise((r) => setTimeout(r, Math.min(30_000, 250 * 2 ** attempt)));
      if (this.closed) return;
      try {
        await this.repl?.end({ timeout: 1 }).catch(() => {});
        this.repl = open(this.cfg, { connection: { replication: "database", application_name: `cdc-sink:${this.cfg.name}` } });
        // a transaction cut off mid-way is sent again in full from the confirmed position
        this.queue.length = 0;
        this.txn = undefined;
        this.lastReadEnd = this.lastAcked;
        await this.startStreaming(this.lastAcked);
        this.metrics.retries.inc({ stage: "source" });
        return;
      } catch (e) {
        this.metrics.retries.inc({ stage: "source" });
        this.log.error("reconnecting replication failed; retrying", { source: this.cfg.name, attempt, ...errorInfo(e) });
      }
    }
  }

  /** Standby status update: flush position = what analytics committed; everything when idle. */
  sendStatus(): void {
    if (!this.copy || !this.streaming) return;
    let flushed = this.lastAcked;
    const idle = this.queue.length === 0 && !this.txn && this.lastReadEnd === this.lastAcked && this.snapshotDone;
    if (idle && this.lastWalEnd > flushed) flushed = this.lastWalEnd;
    const b = Buffer.alloc(34);
    b[0] = 0x72; // 'r'
    b.writeBigUInt64BE(flushed, 1);
    b.writeBigUInt64BE(flushed, 9);
    b.writeBigUInt64BE(flushed, 17);
    b.writeBigUInt64BE(BigInt(Date.now() - Date.UTC(2000, 0, 1)) * 1000n, 25);
    b[33] = 0;
    this.copy.write(b);
  }

  async updateWalRetained(): Promise<void> {
    try {
      const [r] = await this.admin`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained FROM pg_replication_slots WHERE slot_name = ${this.slot}`;
      if (!r) return;
      const retained = Number(r.retained);
      this.metrics.walRetained.set({ slot: this.slot }, retained);
      if (retained > this.cfg.wal_retained_warn_bytes)
        this.log.warn("replication slot retains a lot of WAL", { slot: this.slot, retainedBytes: retained, thresholdBytes: this.cfg.wal_retained_warn_bytes });
    } catch (e) {
      this.log.debug("reading retained WAL failed", errorInfo(e));
    }
  }

  /** Moves queued items into the batch; returns how many source records were taken. */
  drain(batch: Batch, max: number): number {
    let n = 0;
    const now = Date.now();
    while (n < max && this.queue.length && !this.pendingColumns.length) {
      const item = this.queue.shift()!;
      n++;
      if (item.kind === "row") this.addSnapshotRow(batch, item.target, item.values, now);
      else if (item.kind === "snapshot-done") {
        this.snapshotDone = true;
        batch.advance({ stream: this.stream, part: `${this.cfg.name}#snapshot`, position: 0 }, 1, 0, now);
        this.log.info("snapshot complete", { source: this.cfg.name });
      } else this.handle(batch, item.msg, now);
    }
    if (this.paused && this.queue.length < QUEUE_LOW) {
      this.paused = false;
      this.copy?.resume();
    }
    return n;
  }

  addSnapshotRow(batch: Batch, t: Target, values: Record<string, string | null>, now: number): void {
    const coord: Coord = { stream: this.stream, part: `${this.cfg.name}#snapshot`, position: 0 };
    batch.advance(coord, 0, 0, now);
    const cols: string[] = [];
    const vals: (string | null)[] = [];
    const key: (string | null)[] = new Array(t.key.length).fill(null);
    for (const [src, col] of t.columns) {
      const v = values[src] ?? null;
      cols.push(col);
      vals.push(v);
      const k = t.keyIndex.get(col);
      if (k !== undefined) key[k] = v;
    }
    batch.add({ target: t, kind: Kind.Upsert, key, keyId: JSON.stringify(key), cols, vals, posTx: 0, pos: this.snapshotLsn, sourceTs: 0, coord }, now);
  }

  handle(batch: Batch, m: PgOutputMessage, now: number): void {
    switch (m.tag) {
      case "begin":
        this.txn = { commitLsn: Number(m.finalLsn), commitTime: m.commitTime, seq: 0 };
        return;
      case "commit": {
        const coord: Coord = { stream: this.stream, part: this.cfg.name, position: Number(m.commitLsn) };
        batch.advance(coord, Number(m.endLsn), 0, now);
        this.lastReadEnd = m.endLsn;
        this.txn = undefined;
        return;
      }
      case "relation": {
        const target = this.byTable.get(`${m.relation.schema}.${m.relation.table}`);
        this.relations.set(m.relation.oid, { rel: m.relation, target });
        if (target) {
          const unknown = m.relation.columns.filter((c) => !target.columns.has(c.name) && !this.warnedColumns.has(`${target.table.name}.${c.name}`));
          const allowed = (name: string) => !target.mapping.columns || target.mapping.columns.includes(name);
          for (const c of unknown) {
            this.warnedColumns.add(`${target.table.name}.${c.name}`);
            if (this.cfg.new_columns === "add" && allowed(c.name) && !target.table.columns.has(target.mapping.rename[c.name] ?? c.name))
              this.pendingColumns.push({ target, name: c.name, typeOid: c.typeOid, typmod: c.typmod });
            else
              this.log.warn("source column has no analytics column; ignored", { source: this.cfg.name, table: `${m.relation.schema}.${m.relation.table}`, column: c.name, target: target.table.name });
          }
        }
        return;
      }
      case "truncate": {
        for (const oid of m.relationOids) {
          const t = this.relations.get(oid)?.target;
          if (!t) continue;
          const coord: Coord = { stream: this.stream, part: this.cfg.name, position: this.txn?.commitLsn ?? 0 };
          batch.add({ target: t, kind: Kind.Truncate, key: [], keyId: "", posTx: this.txn?.commitLsn ?? 0, pos: ++this.txn!.seq, sourceTs: this.txn?.commitTime ?? 0, coord }, now);
        }
        return;
      }
      case "insert":
      case "update":
      case "delete": {
        const r = this.relations.get(m.relationOid);
        if (!r?.target || !this.txn) return;
        const t = r.target;
        const coord: Coord = { stream: this.stream, part: this.cfg.name, position: this.txn.commitLsn };
        // inside a transaction the checkpoint stays at the end of the last one read; its COMMIT moves it
        batch.advance(coord, Number(this.lastReadEnd), 0, now);
        const cols: string[] = [];
        const vals: (string | null)[] = [];
        const key: (string | null)[] = new Array(t.key.length).fill(null);
        r.rel.columns.forEach((c, i) => {
          const v = m.values[i];
          const keyCol = t.keyFields.get(c.name);
          if (keyCol !== undefined && v !== undefined) key[t.keyIndex.get(keyCol)!] = v;
          const col = t.columns.get(c.name);
          if (col === undefined || v === undefined || m.tag === "delete") return;
          cols.push(col);
          vals.push(v);
        });
        const change: Change = {
          target: t,
          kind: m.tag === "delete" ? Kind.Delete : Kind.Upsert,
          key,
          keyId: JSON.stringify(key),
          posTx: this.txn.commitLsn,
          pos: ++this.txn.seq,
          sourceTs: this.txn.commitTime,
          coord,
        };
        if (m.tag !== "delete") {
          change.cols = cols;
          change.vals = vals;
        }
        batch.add(change, now);
        return;
      }
    }
  }

  /** new_columns = "add": adds the source's new columns to the analytics table, with the source's type. */
  async addPendingColumns(): Promise<void> {
    while (this.pendingColumns.length) {
      const { target, name, typeOid, typmod } = this.pendingColumns[0]!;
      const [{ type }] = (await this.admin`SELECT format_type(${typeOid}::oid, ${typmod}::int) AS type`) as unknown as [{ type: string }];
      const column = target.mapping.rename[name] ?? name;
      await this.analytics.unsafe(`ALTER TABLE ${target.table.ident} ADD COLUMN IF NOT EXISTS ${quoteIdent(column)} ${type}`);
      Object.assign(target, resolveTarget(target.mapping, await introspectTable(this.analytics, target.table.name)));
      this.applier.invalidate(target);
      this.log.info("source column added to analytics", { source: this.cfg.name, table: target.table.name, column, type });
      this.pendingColumns.shift();
    }
  }

  acknowledge(result: ApplyResult): void {
    const p = result.positions.get(partKey({ stream: this.stream, part: this.cfg.name }));
    if (p && BigInt(p.next) > this.lastAcked) this.lastAcked = BigInt(p.next);
    this.sendStatus();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.walTimer) clearInterval(this.walTimer);
    this.sendStatus();
    this.copy?.end();
    await this.repl?.end({ timeout: 2 }).catch(() => {});
    await this.admin?.end({ timeout: 2 }).catch(() => {});
  }
}

export function createPgSource(deps: { config: Config; targets: Target[]; applier: Applier; analytics: Sql; metrics: Metrics; log: Logger }): Source {
  const readers = deps.config.postgres_sources.map(
    (s) => new SlotReader(s, deps.targets.filter((t) => t.mapping.source === s.name), deps.applier, deps.analytics, deps.metrics, deps.log.child({ source: s.name })),
  );
  const drain = async (batch: Batch, max: number) => {
    let n = 0;
    for (const r of readers) {
      n += r.drain(batch, max - n);
      if (r.pendingColumns.length) {
        await r.addPendingColumns();
        n += r.drain(batch, max - n);
      }
    }
    return n;
  };
  const maxPerRead = deps.config.batch.max_events;
  return {
    kind: "postgres",
    async start() {
      for (const r of readers) await r.start();
    },
    async read(batch: Batch, waitMs: number): Promise<number> {
      let n = await drain(batch, maxPerRead);
      if (n || waitMs <= 0) return n;
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, waitMs);
        function done() {
          clearTimeout(t);
          for (const r of readers) r.wake = undefined;
          resolve();
        }
        for (const r of readers) r.wake = done;
      });
      n += await drain(batch, maxPerRead);
      return n;
    },
    async committed(result: ApplyResult) {
      for (const r of readers) r.acknowledge(result);
    },
    ready: () => readers.every((r) => r.streaming),
    async close() {
      for (const r of readers) await r.close();
      deps.metrics.up.set({}, 0);
    },
  };
}
