// The batch stage: decoded changes coalesced per key (the newest source position wins), bounded in
// count, bytes and latency, with the checkpoint position each source part reaches once it commits.
import { type Change, type Coord, type DeadLetter, Kind, partKey, type Position, type Target } from "./model.ts";

export interface BatchLimits {
  maxEvents: number;
  maxBytes: number;
  maxLatencyMs: number;
}

/** Checkpoint progress of one stream/part within a batch. */
export interface PartProgress {
  stream: string;
  part: string;
  /** position of the first record of this part in the batch */
  first: Position;
  /** where the part resumes once the batch committed */
  next: Position;
}

interface TableState {
  target: Target;
  pending: Map<string, Change>;
  events: number;
  firstAt: number;
  limitEvents: number;
  limitLatency: number;
}

const newer = (a: Change, b: Change) => a.commitLsn > b.commitLsn || (a.commitLsn === b.commitLsn && a.lsn > b.lsn);

export class ChangeBatch {
  /** pending changes per analytics table (by name: a schema change replaces the Target, not the table) */
  readonly tables = new Map<string, TableState>();
  readonly truncates = new Map<string, Target>();
  /** truncate events of mappings whose policy is "ignore": counted, nothing else */
  readonly ignoredTruncates = new Map<string, number>();
  readonly deadLetters: DeadLetter[] = [];
  readonly parts = new Map<string, PartProgress>();
  events = 0;
  bytes = 0;
  /** bytes of the largest record */
  largest = 0;
  firstAt = 0;

  constructor(readonly limits: BatchLimits) {}

  /** Records that the record at `coord` was consumed (applied, skipped or dead-lettered): its part resumes at `next`. */
  advance(coord: Coord, next: Position, bytes: number, now: number): void {
    const k = partKey(coord);
    const p = this.parts.get(k);
    if (p) {
      if (next > p.next) p.next = next;
    } else this.parts.set(k, { stream: coord.stream, part: coord.part, first: coord.position, next });
    this.events++;
    this.bytes += bytes;
    if (bytes > this.largest) this.largest = bytes;
    if (!this.firstAt) this.firstAt = now;
  }

  add(c: Change, now: number): void {
    const t = c.target;
    const name = t.table.name;
    let st = this.tables.get(name);
    if (!st) {
      st = {
        target: t,
        pending: new Map(),
        events: 0,
        firstAt: now,
        limitEvents: t.mapping.batch_size ?? this.limits.maxEvents,
        limitLatency: t.mapping.batch_latency_ms ?? this.limits.maxLatencyMs,
      };
      this.tables.set(name, st);
    }
    st.target = t;
    st.events++;
    if (c.kind === Kind.Truncate) {
      // the one place the truncate policy is decided, for every source
      if (t.mapping.truncate !== "truncate") {
        this.ignoredTruncates.set(name, (this.ignoredTruncates.get(name) ?? 0) + 1);
        return;
      }
      st.pending.clear();
      this.truncates.set(name, t);
      return;
    }
    const prev = st.pending.get(c.keyText);
    if (prev) {
      const tombstone = c.kind === Kind.Delete && c.commitLsn < 0n;
      // a tombstone right after its delete adds nothing, and would lose the delete's position
      if (tombstone && (prev.kind === Kind.Delete || prev.deletedAt !== undefined)) return;
      // the newer source position wins, not the later arrival: snapshot rows and streamed
      // changes interleave, and a stale event must not replace a newer pending one
      if (!tombstone && prev.commitLsn >= 0n && newer(prev, c)) return;
      // soft delete keeps the row: a delete of a row still pending writes that row, flagged
      if (c.kind === Kind.Delete && !tombstone && prev.kind === Kind.Upsert && t.mapping.delete_mode === "soft")
        c = { ...prev, commitLsn: c.commitLsn, lsn: c.lsn, sourceTs: c.sourceTs, deletedAt: c.sourceTs, coord: c.coord, raw: c.raw };
      // an update with unchanged-TOAST columns keeps the values the pending change carries
      if (c.kind === Kind.Upsert && c.partial && prev.kind === Kind.Upsert) {
        const merged = new Map<string, string | null>();
        prev.cols!.forEach((col, i) => merged.set(col, prev.vals![i]!));
        c.cols!.forEach((col, i) => merged.set(col, c.vals![i]!));
        c = { ...c, cols: [...merged.keys()], vals: [...merged.values()], partial: prev.partial };
      }
      st.pending.delete(c.keyText);
    }
    st.pending.set(c.keyText, c);
  }

  deadLetter(d: DeadLetter): void {
    this.deadLetters.push(d);
  }

  /** Every pending change, optionally only those whose record `keep` accepts. */
  changes(keep?: (c: Coord) => boolean): Change[] {
    const out: Change[] = [];
    for (const st of this.tables.values()) for (const c of st.pending.values()) if (!keep || keep(c.coord)) out.push(c);
    return out;
  }

  /** True when the batch must be applied now. */
  full(now: number): boolean {
    if (this.events >= this.limits.maxEvents || this.bytes >= this.limits.maxBytes) return true;
    for (const st of this.tables.values()) if (st.events >= st.limitEvents) return true;
    return this.due(now);
  }

  /** True when the oldest pending event has waited its maximum latency. */
  due(now: number): boolean {
    if (!this.events) return false;
    if (now - this.firstAt >= this.limits.maxLatencyMs) return true;
    for (const st of this.tables.values()) if (now - st.firstAt >= st.limitLatency) return true;
    return false;
  }
}
