// The re-checks: the source moves while verify runs, so a key whose rows differed once is read
// again on both sides, and reported only when the difference cannot be the sink still catching up.
//
// PostgreSQL-source mappings (positions are commit LSNs): per round, R = the source's WAL insert
// position, then the source rows (A), then R' = the WAL position again. Every transaction visible
// to A committed before R'. Once the sink has applied the source up to R' (its checkpoint, or the
// slot's confirmed flush LSN, which is confirmed only after the analytics commit), the analytics
// rows are read (D), then the source rows once more (B). A key is
//   - equal when A and D agree (dropped);
//   - different when A = B (the source row did not move meanwhile) and the analytics row's position
//     (or its tombstone's) is below R: no transaction after R touched it in analytics, the sink has
//     applied everything before R', so what it holds is its final word on what A shows;
//   - otherwise undecided, and read again in the next round until the time allowed runs out.
// The source slot not streaming (the daemon stopped) or a checkpoint that never reaches R' leaves
// the keys unconfirmed: verify exits 2, it cannot tell.
//
// Kafka mappings (Debezium positions do not order against a WAL position read now): a key is read
// on both sides about every second; it is different once the source row has stayed the same for
// `settle` and the analytics row still differs from it. Keys whose source row keeps changing past
// three times `settle` are unconfirmed.
import type { Sql } from "postgres";
import { textArray } from "../sink/pgarray.ts";
import { quoteIdent } from "../sink/schema.ts";
import type { Candidate, DiffKind, Reader } from "./chunks.ts";
import { formatLsn, sinkProgress, sleep, walPosition } from "./session.ts";
import { keyOf, keyTextOf, rowsQuery, type Side } from "./sql.ts";

export type Position = readonly [bigint, bigint];

/** One row as read for a key. */
export interface RowRead {
  key: (string | null)[];
  /** canonical text of each compared column (plan.columns order) */
  vals: (string | null)[];
  h: string;
  /** analytics: the row's source position (null: written by hand, not by the sink) */
  pos: Position | null;
  /** analytics: not soft-deleted */
  live: boolean;
}

/** A difference as reported: the key, and for `different` the columns that differ. */
export interface KeyDiff {
  key: (string | null)[];
  keyText: string;
  kind: DiffKind;
  columns?: string[];
}

const BATCH = 1000;

/** The rows of `keys` on one side, by key text. */
export async function readRows(r: Reader, side: Side, keys: Array<(string | null)[]>, sql?: Sql): Promise<Map<string, RowRead>> {
  const out = new Map<string, RowRead>();
  const n = r.plan.key.length;
  const q = rowsQuery(r.plan, side);
  const db = sql ?? (side === "source" ? r.src : r.dst);
  for (let i = 0; i < keys.length; i += BATCH) {
    const part = keys.slice(i, i + BATCH);
    const params = r.plan.key.map((_, k) => textArray(part.length, (j) => part[j]![k]!));
    const rows = await db.unsafe(q, params);
    for (const row of rows) {
      const key = keyOf(row, n);
      const pos = row.pc === null || row.pc === undefined ? null : ([BigInt(row.pc as string), BigInt((row.pl as string | null) ?? "0")] as const);
      out.set(keyTextOf(key), { key, vals: r.plan.columns.map((_, c) => row[`c${c}`] as string | null), h: row.h as string, pos, live: row.live !== false });
    }
    await r.pace[side].take(Math.max(rows.length, 1));
  }
  return out;
}

/** Tombstone positions of `keyTexts` in the analytics table `table`. */
export async function readTombstones(dst: Sql, stateSchema: string, table: string, keyTexts: string[]): Promise<Map<string, Position>> {
  const out = new Map<string, Position>();
  for (let i = 0; i < keyTexts.length; i += BATCH) {
    const part = keyTexts.slice(i, i + BATCH);
    const rows = await dst.unsafe(`SELECT key, commit_lsn::text AS c, lsn::text AS l FROM ${quoteIdent(stateSchema)}.tombstones WHERE tbl = $1 AND key = ANY($2::text[])`, [
      table,
      textArray(part.length, (j) => part[j]!),
    ]);
    for (const row of rows) out.set(row.key as string, [BigInt(row.c as string), BigInt(row.l as string)]);
  }
  return out;
}

const later = (a: Position | null | undefined, b: Position | null | undefined): Position | null => {
  if (!a) return b ?? null;
  if (!b) return a;
  return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]) ? a : b;
};

/** The newest position the analytics side knows for a key: its row's or its tombstone's. */
export const storedPosition = (row: RowRead | undefined, tomb: Position | undefined): Position | null => later(row?.pos, tomb);

/** The live analytics row, if any. */
export const liveOf = (d: RowRead | undefined) => (d?.live ? d : undefined);
export const sameRow = (a: RowRead | undefined, b: RowRead | undefined) => (a === undefined ? b === undefined : b !== undefined && a.h === b.h);

/** What differs between a source row and the live analytics row. */
export function describe(r: Reader, keyText: string, key: (string | null)[], s: RowRead | undefined, d: RowRead | undefined): KeyDiff {
  if (!d) return { key, keyText, kind: "missing" };
  if (!s) return { key, keyText, kind: "extra" };
  const columns = r.plan.columns.filter((_, i) => s.vals[i] !== d.vals[i]).map((c) => c.target);
  return { key, keyText, kind: "different", columns };
}

export interface Confirmation {
  confirmed: KeyDiff[];
  unconfirmed: KeyDiff[];
  reason?: string;
}

export interface PgConfirmContext {
  reader: Reader;
  stateSchema: string;
  /** the checkpoint row and slot that say how far the sink applied this source */
  progress: { stream: string; part: string; slot: string };
  sourceName: string;
  timeoutMs: number;
  /** how long a slot may be seen inactive before the sink counts as not running */
  inactiveGraceMs?: number;
  pollMs?: number;
  signal?: AbortSignal;
}

/** Resolves once the sink applied the source up to `lsn`; otherwise says why not. */
export async function waitApplied(ctx: PgConfirmContext, lsn: bigint, deadline: number): Promise<string | undefined> {
  const { reader: r, progress: p } = ctx;
  let inactiveSince: number | undefined;
  for (;;) {
    const s = await sinkProgress(r.dst, ctx.stateSchema, r.src, p.stream, p.part, p.slot);
    if (s.checkpoint >= lsn || s.flushed >= lsn) return undefined;
    const now = Date.now();
    const where = `its checkpoint (${s.checkpoint < 0n ? "none" : formatLsn(s.checkpoint)}) is behind the source's WAL position ${formatLsn(lsn)}`;
    if (!s.slotExists) return `replication slot ${p.slot} does not exist at source ${ctx.sourceName}: the sink is not streaming it, ${where}`;
    if (!s.active) {
      inactiveSince ??= now;
      if (now - inactiveSince >= (ctx.inactiveGraceMs ?? 5000)) return `replication slot ${p.slot} is not streaming (is cdc-sink running?): ${where}`;
    } else inactiveSince = undefined;
    if (now >= deadline) return `the sink did not catch up within ${Math.round(ctx.timeoutMs / 1000)} s: ${where}`;
    await sleep(ctx.pollMs ?? 100, ctx.signal);
  }
}

/** Re-checks the candidates of a PostgreSQL-source mapping (see the header). */
export async function confirmPg(ctx: PgConfirmContext, candidates: Iterable<Candidate>): Promise<Confirmation> {
  const r = ctx.reader;
  const pending = new Map([...candidates].map((c) => [c.keyText, c]));
  const confirmed: KeyDiff[] = [];
  const deadline = Date.now() + ctx.timeoutMs;
  while (pending.size) {
    const keys = [...pending.values()].map((c) => c.key);
    const R = await walPosition(r.src);
    const A = await readRows(r, "source", keys);
    const reason = await waitApplied(ctx, await walPosition(r.src), deadline);
    if (reason) return { confirmed, unconfirmed: [...pending.values()].map((c) => ({ key: c.key, keyText: c.keyText, kind: c.kind })), reason };
    const D = await readRows(r, "analytics", keys);
    const tombs = await readTombstones(r.dst, ctx.stateSchema, r.plan.table, [...pending.keys()]);
    const B = await readRows(r, "source", keys);
    for (const [keyText, c] of pending) {
      const a = A.get(keyText);
      const d = D.get(keyText);
      if (sameRow(a, liveOf(d))) {
        pending.delete(keyText);
        continue;
      }
      const pos = storedPosition(d, tombs.get(keyText));
      if (sameRow(a, B.get(keyText)) && (pos === null || pos[0] < R)) {
        confirmed.push(describe(r, keyText, c.key, a, liveOf(d)));
        pending.delete(keyText);
      }
    }
    if (pending.size && Date.now() >= deadline)
      return { confirmed, unconfirmed: [...pending.values()].map((c) => ({ key: c.key, keyText: c.keyText, kind: c.kind })), reason: `rows still changing after ${Math.round(ctx.timeoutMs / 1000)} s` };
    if (pending.size) await sleep(200, ctx.signal);
  }
  return { confirmed, unconfirmed: [] };
}

/** Re-checks the candidates of a Kafka mapping (see the header). */
export async function confirmKafka(r: Reader, candidates: Iterable<Candidate>, settleMs: number, opts: { intervalMs?: number; signal?: AbortSignal } = {}): Promise<Confirmation> {
  const pending = new Map([...candidates].map((c) => [c.keyText, { ...c }]));
  const confirmed: KeyDiff[] = [];
  const allowed = Math.max(3 * settleMs, settleMs + 5000);
  const deadline = Date.now() + allowed;
  const interval = opts.intervalMs ?? Math.min(1000, Math.max(100, settleMs / 4));
  while (pending.size) {
    const keys = [...pending.values()].map((c) => c.key);
    const S = await readRows(r, "source", keys);
    const D = await readRows(r, "analytics", keys);
    const now = Date.now();
    for (const [keyText, c] of pending) {
      const s = S.get(keyText);
      const d = liveOf(D.get(keyText));
      if (sameRow(s, d)) {
        pending.delete(keyText);
        continue;
      }
      const h = s?.h ?? "";
      if (h !== c.srcHash) {
        c.srcHash = h;
        c.since = now;
      }
      if (now - c.since >= settleMs) {
        confirmed.push(describe(r, keyText, c.key, s, d));
        pending.delete(keyText);
      }
    }
    if (!pending.size) break;
    if (now >= deadline)
      return {
        confirmed,
        unconfirmed: [...pending.values()].map((c) => ({ key: c.key, keyText: c.keyText, kind: c.kind })),
        reason: `source rows kept changing for ${Math.round(allowed / 1000)} s (settle ${settleMs / 1000} s)`,
      };
    await sleep(interval, opts.signal);
  }
  return { confirmed, unconfirmed: [] };
}
