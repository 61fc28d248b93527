// `cdc-sink repair`: verify, then mend the keys that differ by re-reading them from the source and
// applying them through the sink's own position-guarded applier (sink/apply.ts), so a change
// streamed meanwhile still wins. Safe while the daemon runs.
//
// Which position a repaired row carries:
//
// PostgreSQL-source mappings — positions are (commit LSN of the transaction, index in it), index
// from 1. R = pg_current_wal_insert_lsn() is read BEFORE the REPEATABLE READ snapshot the rows are
// read in, and the repair writes at (R, 0). A transaction committing after the snapshot inserts
// its commit record after R (commit LSN >= R, its changes at (>= R, >= 1) > (R, 0)): streamed
// later, it wins over the repair. One that committed between R and the snapshot is in the read
// (a stream of it is skipped by the guard, the repair already holds its result). Everything the
// sink applied before is below R and is overwritten. A row absent at the source is deleted at
// (R, 0) with its tombstone, so a replayed older insert cannot bring it back. The one gap: a
// transaction whose commit record precedes R but which becomes visible only after the snapshot
// (the instant between its WAL flush and its visibility, longer under synchronous replication):
// its change is held back by the guard. The check after the repair sees that key differ again
// and mends it in a further round, read after that transaction.
//
// Kafka mappings — Debezium positions are (lastCommitLsn of the previous transaction, record LSN)
// and do not order against a WAL position read now. The repair writes just above the position
// the analytics side holds for the key (its row's, or its tombstone's): (c, l + 1). Any change
// newer than the stored one is at (c, l') with l' >= l + 8 (WAL records are 8-byte aligned and
// longer than that) or at a larger c, so it still wins; replays of the stored change or older
// stay below. A key the analytics side knows nothing of is inserted at the snapshot position
// (0, R), below every streamed change (as a Debezium snapshot row would be). A row the source no
// longer has is deleted at (c, l + 1) with its tombstone: its streamed delete, if one comes, is
// newer and harmless; a replayed older insert stays deleted.
//
// Serialization with the running pipeline: while a repair batch commits, the pipeline's
// checkpoint rows of that source (pg:<slot>/<source>, or every partition of the mapping's topic)
// are held locked by a second transaction. The pipeline takes those rows first in each batch, so
// its batches run either wholly before the repair (the repair reads their result) or wholly
// after (their statements see the repair's rows and tombstones). The repair's own changes carry
// the coordinates {stream: "repair:<table>", part: <table>} and write no checkpoint.
import type { Sql } from "postgres";
import { ChangeBatch } from "../batch.ts";
import type { Config } from "../config.ts";
import { type Logger, silentLogger } from "../log.ts";
import { type Change, type Coord, Kind } from "../model.ts";
import { createApplier } from "../sink/apply.ts";
import { type CheckpointRows, withCheckpointsHeld } from "../sink/state.ts";
import { kafkaStream } from "../sources/kafka.ts";
import { type Confirmation, type KeyDiff, liveOf, type Position, readRows, readTombstones, sameRow, storedPosition } from "./confirm.ts";
import { showKey } from "./report.ts";
import { walPosition } from "./session.ts";
import { keyTextOf } from "./sql.ts";
import { compareTable, confirm, statusOf, type TableReport, type TableSession, type VerifyOptions } from "./verify.ts";

export type MendAction = "insert" | "update" | "delete";

export interface Mended {
  /** what each key needed */
  actions: Array<{ key: (string | null)[]; action: MendAction }>;
  /** rows changed */
  applied: number;
  /** changes the guard held back: the stored row was newer */
  kept: number;
  /** rows the analytics database rejected (dead-lettered) */
  rejected: number;
}

/** Kafka mappings: just above what the analytics side holds for the key, or the snapshot position (0, R). */
export function kafkaRepairPosition(stored: Position | null, r: bigint): Position {
  if (!stored || stored[0] < 0n) return [0n, r];
  return [stored[0], stored[1] + 1n];
}

const BATCH = 2000;

/** The pipeline's checkpoint rows of this mapping's source, which a repair holds while it commits. */
function pipelineRows(session: TableSession, config: Config): CheckpointRows | undefined {
  const s = session.subject;
  if (s.mode === "postgres") return s.progress;
  return config.kafka && s.mapping.topic ? { stream: kafkaStream(config.kafka), topic: s.mapping.topic } : undefined;
}

/** Re-reads `keys` at the source and applies them, position-guarded (see the header). */
export async function mendKeys(session: TableSession, config: Config, keys: Array<(string | null)[]>, log: Logger = silentLogger): Promise<Mended> {
  const r = session.reader;
  const pg = session.subject.mode === "postgres";
  const R = await walPosition(r.src);
  const source = await r.src.begin("ISOLATION LEVEL REPEATABLE READ READ ONLY", (tx) => readRows(r, "source", keys, tx as unknown as Sql));
  const stored = await readRows(r, "analytics", keys);
  const tombs = pg ? new Map<string, Position>() : await readTombstones(r.dst, config.postgres.state_schema, r.plan.table, keys.map(keyTextOf));
  const coord: Coord = { stream: `repair:${r.plan.table}`, part: r.plan.table, position: R };
  const cols = r.plan.columns.map((c) => c.target);
  const changes: Change[] = [];
  const actions: Mended["actions"] = [];
  for (const key of keys) {
    const keyText = keyTextOf(key);
    const s = source.get(keyText);
    const d = stored.get(keyText);
    if (sameRow(s, liveOf(d))) continue;
    const [commitLsn, lsn] = pg ? [R, 0n] : kafkaRepairPosition(storedPosition(d, tombs.get(keyText)), R);
    const base = { target: session.target, key, keyText, commitLsn, lsn, sourceTs: 0, coord };
    if (s) changes.push({ ...base, kind: Kind.Upsert, cols, vals: s.vals });
    else changes.push({ ...base, kind: Kind.Delete });
    actions.push({ key, action: !s ? "delete" : liveOf(d) ? "update" : "insert" });
  }
  const out: Mended = { actions, applied: 0, kept: 0, rejected: 0 };
  if (!changes.length) return out;
  const apply = createApplier({ sql: r.dst, stateSchema: config.postgres.state_schema, log, maxValueBytes: config.dead_letters.max_value_bytes });
  await withCheckpointsHeld(session.reader.dst, config.postgres.state_schema, pipelineRows(session, config), async () => {
    for (let i = 0; i < changes.length; i += BATCH) {
      const batch = new ChangeBatch({ maxEvents: Number.MAX_SAFE_INTEGER, maxBytes: Number.MAX_SAFE_INTEGER, maxLatencyMs: 0 });
      const now = Date.now();
      for (const c of changes.slice(i, i + BATCH)) batch.add(c, now);
      const res = await apply(batch);
      out.applied += res.applied;
      out.kept += res.skipped;
      out.rejected += res.deadLetters;
    }
  });
  log.info("repair applied", { table: r.plan.table, position: `${R}`, changes: changes.length, applied: out.applied, kept: out.kept, rejected: out.rejected });
  return out;
}

/** After mending: the keys that still differ, confirmed the way verify confirms. */
export async function recheck(session: TableSession, config: Config, opts: VerifyOptions, keys: KeyDiff[]): Promise<Confirmation> {
  const r = session.reader;
  const list = keys.map((k) => k.key);
  const [S, D] = [await readRows(r, "source", list), await readRows(r, "analytics", list)];
  const now = Date.now();
  const left = keys
    .filter((k) => !sameRow(S.get(k.keyText), liveOf(D.get(k.keyText))))
    .map((k) => ({ key: k.key, keyText: k.keyText, kind: k.kind, srcHash: S.get(k.keyText)?.h ?? "", since: now }));
  return left.length ? confirm(session, config, opts, left) : { confirmed: [], unconfirmed: [] };
}

export interface TableRepair {
  /** what verify found before */
  found: TableReport;
  mended: Mended;
  /** what still differs after the repair (status equal when everything was mended) */
  after: TableReport;
}

/** Verifies one opened table and mends what differs, up to `rounds` times. */
export async function repairTable(session: TableSession, config: Config, opts: VerifyOptions & { rounds?: number }): Promise<TableRepair> {
  const found = await compareTable(session, config, opts);
  const mended: Mended = { actions: [], applied: 0, kept: 0, rejected: 0 };
  // unconfirmed keys are mended too: a position-guarded write of the source's current row is never wrong
  let keys: KeyDiff[] = [...found.missing, ...found.extra, ...found.different, ...found.unconfirmed];
  let left: Confirmation = { confirmed: [], unconfirmed: [] };
  for (let round = 0; keys.length && round < (opts.rounds ?? 3); round++) {
    const m = await mendKeys(session, config, keys.map((k) => k.key), opts.log);
    mended.actions.push(...m.actions);
    mended.applied += m.applied;
    mended.kept += m.kept;
    mended.rejected += m.rejected;
    left = await recheck(session, config, opts, keys);
    keys = left.confirmed;
  }
  const after: TableReport = {
    ...found,
    missing: left.confirmed.filter((d) => d.kind === "missing"),
    extra: left.confirmed.filter((d) => d.kind === "extra"),
    different: left.confirmed.filter((d) => d.kind === "different"),
    unconfirmed: left.unconfirmed,
    reason: left.reason,
  };
  after.status = statusOf(after);
  return { found, mended, after };
}

/** The lines repair prints for a table. */
export function formatRepair(t: TableRepair, limit = 20): string[] {
  const m = t.mended;
  const by = (a: MendAction) => m.actions.filter((x) => x.action === a).map((x) => x.key);
  const list = (keys: Array<(string | null)[]>) => keys.slice(0, limit).map(showKey).join(", ") + (keys.length > limit ? `, … ${keys.length - limit} more` : "");
  const out: string[] = [];
  if (!m.actions.length) return [`  nothing to mend`];
  const [ins, upd, del] = [by("insert"), by("update"), by("delete")];
  out.push(`  mended ${m.applied} rows: ${ins.length} inserted, ${upd.length} updated, ${del.length} deleted${m.kept ? `; ${m.kept} kept (a newer change had arrived)` : ""}${m.rejected ? `; ${m.rejected} rejected (dead letters)` : ""}`);
  if (ins.length) out.push(`  inserted ${list(ins)}`);
  if (upd.length) out.push(`  updated  ${list(upd)}`);
  if (del.length) out.push(`  deleted  ${list(del)}`);
  const a = t.after;
  if (a.status === "equal") out.push(`  now equal`);
  else {
    if (a.missing.length + a.extra.length + a.different.length) out.push(`  still different: ${list([...a.missing, ...a.extra, ...a.different].map((d) => d.key))}`);
    if (a.unconfirmed.length) out.push(`  not confirmed after the repair: ${list(a.unconfirmed.map((d) => d.key))}${a.reason ? ` (${a.reason})` : ""}`);
  }
  return out;
}
