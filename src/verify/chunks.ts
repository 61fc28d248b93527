// The scan: chunk boundaries from the source's key order (every chunk_rows-th key, found in the
// key's index), one hash per chunk computed inside each database, and only the chunks whose hashes
// differ narrowed to keys (key + row digest from both sides). Rows cross the network only for those.
import type { Sql } from "postgres";
import type { Pace } from "./session.ts";
import { boundaryQuery, chunkHashQuery, keyHashQuery, keyOf, keyTextOf, type Side, type TablePlan } from "./sql.ts";

export type DiffKind = "missing" | "extra" | "different";

/** A key whose rows differed once; confirmed or dropped by the re-checks. */
export interface Candidate {
  key: (string | null)[];
  keyText: string;
  kind: DiffKind;
  /** digest of the source row when last read ("" when absent) */
  srcHash: string;
  /** when the source row was last seen to change (ms since epoch) */
  since: number;
}

/** Reads both sides of one table. */
export interface Reader {
  plan: TablePlan;
  src: Sql;
  dst: Sql;
  chunkRows: number;
  pace: Record<Side, Pace>;
  /** narrowing stops collecting keys past this many (memory stays bounded) */
  maxCandidates: number;
}

export interface ScanResult {
  chunks: number;
  chunksDiffering: number;
  sourceRows: number;
  analyticsRows: number;
  candidates: Map<string, Candidate>;
  /** more keys differed than maxCandidates */
  truncated: boolean;
}

type Bound = (string | null)[] | null;
const PREPARED = { prepare: true };
const conn = (r: Reader, side: Side) => (side === "source" ? r.src : r.dst);
const params = (...bounds: Bound[]) => bounds.flatMap((b) => b ?? []) as string[];

/** The key `size` keys after `lo` on `side`, within (lo, hi]; null when the range holds fewer. */
export async function boundary(r: Reader, side: Side, lo: Bound, hi: Bound, size: number): Promise<Bound> {
  const rows = await conn(r, side).unsafe(boundaryQuery(r.plan, side, lo !== null, hi !== null), [...params(lo, hi), String(size - 1)], PREPARED);
  return rows.length ? keyOf(rows[0]!, r.plan.key.length) : null;
}

export async function chunkHash(r: Reader, side: Side, lo: Bound, hi: Bound): Promise<{ n: number; h: string }> {
  const [row] = await conn(r, side).unsafe(chunkHashQuery(r.plan, side, lo !== null, hi !== null), params(lo, hi), PREPARED);
  const n = Number(row!.n);
  await r.pace[side].take(n);
  return { n, h: row!.h as string };
}

async function keyHashes(r: Reader, side: Side, lo: Bound, hi: Bound): Promise<Array<{ key: (string | null)[]; h: string }>> {
  const rows = await conn(r, side).unsafe(keyHashQuery(r.plan, side, lo !== null, hi !== null), params(lo, hi), PREPARED);
  await r.pace[side].take(rows.length);
  return rows.map((row) => ({ key: keyOf(row, r.plan.key.length), h: row.h as string }));
}

/** Keys of the two sides' (key, row hash) lists that differ: missing (source only), extra (analytics only), different. */
export function diffKeys(
  source: Array<{ key: (string | null)[]; h: string }>,
  analytics: Array<{ key: (string | null)[]; h: string }>,
): Array<{ key: (string | null)[]; keyText: string; kind: DiffKind; srcHash: string }> {
  const out: Array<{ key: (string | null)[]; keyText: string; kind: DiffKind; srcHash: string }> = [];
  const bySource = new Map(source.map((s) => [keyTextOf(s.key), s]));
  for (const a of analytics) {
    const keyText = keyTextOf(a.key);
    const s = bySource.get(keyText);
    if (!s) out.push({ key: a.key, keyText, kind: "extra", srcHash: "" });
    else {
      if (s.h !== a.h) out.push({ key: a.key, keyText, kind: "different", srcHash: s.h });
      bySource.delete(keyText);
    }
  }
  for (const [keyText, s] of bySource) out.push({ key: s.key, keyText, kind: "missing", srcHash: s.h });
  return out;
}

/**
 * Narrows the range (lo, hi] to keys. A range too large to hold in memory at once (one side has
 * far more rows than a chunk, e.g. analytics rows past the source's last key) is split first by
 * the larger side's own boundaries, each part hashed again.
 */
async function narrow(r: Reader, lo: Bound, hi: Bound, ns: number, na: number, out: ScanResult): Promise<void> {
  if (out.truncated) return;
  if (Math.max(ns, na) <= 4 * r.chunkRows) {
    const [s, a] = await Promise.all([keyHashes(r, "source", lo, hi), keyHashes(r, "analytics", lo, hi)]);
    const now = Date.now();
    for (const d of diffKeys(s, a)) {
      if (out.candidates.size >= r.maxCandidates) {
        out.truncated = true;
        return;
      }
      out.candidates.set(d.keyText, { ...d, since: now });
    }
    return;
  }
  const side: Side = ns >= na ? "source" : "analytics";
  for (let subLo = lo; ; ) {
    const subHi = await boundary(r, side, subLo, hi, r.chunkRows);
    const end = subHi ?? hi;
    const [a, b] = await Promise.all([chunkHash(r, "source", subLo, end), chunkHash(r, "analytics", subLo, end)]);
    if (a.n !== b.n || a.h !== b.h) await narrow(r, subLo, end, a.n, b.n, out);
    if (!subHi || out.truncated) return;
    subLo = subHi;
  }
}

/**
 * Compares the whole table chunk by chunk. The next boundary is looked up while the current
 * chunk is hashed on both sides at once; each side's reads are paced to its rows per second.
 */
export async function scanTable(r: Reader, onChunk?: (done: { chunks: number; rows: number }) => void): Promise<ScanResult> {
  const out: ScanResult = { chunks: 0, chunksDiffering: 0, sourceRows: 0, analyticsRows: 0, candidates: new Map(), truncated: false };
  let lo: Bound = null;
  let next = boundary(r, "source", null, null, r.chunkRows);
  for (;;) {
    const hi = await next;
    if (hi) next = boundary(r, "source", hi, null, r.chunkRows);
    try {
      const [a, b] = await Promise.all([chunkHash(r, "source", lo, hi), chunkHash(r, "analytics", lo, hi)]);
      out.chunks++;
      out.sourceRows += a.n;
      out.analyticsRows += b.n;
      if (a.n !== b.n || a.h !== b.h) {
        out.chunksDiffering++;
        await narrow(r, lo, hi, a.n, b.n, out);
      }
    } catch (e) {
      // the next boundary's query is still running: let it settle before the connections close
      if (hi) await next.catch(() => {});
      throw e;
    }
    onChunk?.({ chunks: out.chunks, rows: out.sourceRows });
    if (!hi) return out;
    lo = hi;
  }
}
