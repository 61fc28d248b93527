// Decoded changes, coalesced per key in arrival order, bounded in count, bytes and latency.
import type { Mapping } from "./config.ts";
import type { TableInfo } from "./sink/schema.ts";

/** A mapping resolved against its analytics table. */
export interface Target {
  mapping: Mapping;
  table: TableInfo;
  /** target key columns */
  key: string[];
  /** source column name -> target column name, for every column that is copied */
  columns: Map<string, string>;
  /** source key field name -> target key column */
  keyFields: Map<string, string>;
  /** target key column -> its position in `key` */
  keyIndex: Map<string, number>;
}

/** Where an event came from: enough to find it again and to checkpoint past it. */
export interface Coord {
  /** checkpoint stream, e.g. kafka:<group> or pg:<slot> */
  stream: string;
  /** topic/partition, or the source name */
  part: string;
  /** Kafka offset or source LSN */
  position: number;
}

export const enum Kind {
  Upsert = 0,
  Delete = 1,
  Truncate = 2,
}

export interface Change {
  target: Target;
  kind: Kind;
  /** canonical text of the key values (tombstone identity and coalescing) */
  keyId: string;
  /** key values as PostgreSQL text, in target.key order */
  key: (string | null)[];
  /** upserts: target columns present (absent TOAST columns left out) and their text values */
  cols?: string[];
  vals?: (string | null)[];
  /** source position, ordered: commit position then position within it; -1 for a tombstone without one */
  posTx: number;
  pos: number;
  /** source commit time, ms since epoch (0 when unknown) */
  sourceTs: number;
  /** soft-delete targets: this upsert also flags the row deleted, at this source time (0: unknown) */
  deletedTs?: number;
  coord: Coord;
  raw?: { key: string | null; value: string | null };
}

/** Key of a checkpoint stream/part in `Batch.positions` and `ApplyResult.positions`. */
export const partKey = (p: { stream: string; part: string }) => `${p.stream}\u0000${p.part}`;

export interface DeadLetter {
  coord: Coord;
  table: string | null;
  stage: "decode" | "apply";
  key: string | null;
  value: string | null;
  /** the record's exact bytes, when its text above is not (NUL bytes, invalid UTF-8) */
  keyBytes?: Uint8Array | null;
  valueBytes?: Uint8Array | null;
  error: string;
  code: string;
}

export interface BatchLimits {
  maxEvents: number;
  maxBytes: number;
  maxLatencyMs: number;
}

/** Per-mapping overrides of the batch limits. */
interface TableState {
  pending: Map<string, Change>;
  events: number;
  firstAt: number;
  limitEvents: number;
  limitLatency: number;
}

export class Batch {
  readonly tables = new Map<Target, TableState>();
  readonly truncates = new Set<Target>();
  /** truncate events of mappings whose policy is "ignore": counted, nothing else */
  readonly ignoredTruncates = new Map<Target, number>();
  readonly deadLetters: DeadLetter[] = [];
  /** checkpoint: next position per stream/part, and the first position seen in this batch */
  readonly positions = new Map<string, { stream: string; part: string; first: number; next: number }>();
  events = 0;
  bytes = 0;
  firstAt = 0;

  constructor(readonly limits: BatchLimits) {}

  /** Records that `coord` was consumed (applied, skipped or dead-lettered): the checkpoint moves past it. */
  advance(coord: Coord, next: number, bytes: number, now: number): void {
    const k = partKey(coord);
    const p = this.positions.get(k);
    if (p) p.next = Math.max(p.next, next);
    else this.positions.set(k, { stream: coord.stream, part: coord.part, first: coord.position, next });
    this.events++;
    this.bytes += bytes;
    if (!this.firstAt) this.firstAt = now;
  }

  add(c: Change, now: number): void {
    const t = c.target;
    let st = this.tables.get(t);
    if (!st) {
      st = {
        pending: new Map(),
        events: 0,
        firstAt: now,
        limitEvents: t.mapping.batch_size ?? this.limits.maxEvents,
        limitLatency: t.mapping.batch_latency_ms ?? this.limits.maxLatencyMs,
      };
      this.tables.set(t, st);
    }
    st.events++;
    if (c.kind === Kind.Truncate) {
      // the one place the truncate policy is decided, for every source
      if (t.mapping.truncate !== "truncate") {
        this.ignoredTruncates.set(t, (this.ignoredTruncates.get(t) ?? 0) + 1);
        return;
      }
      st.pending.clear();
      this.truncates.add(t);
      return;
    }
    const prev = st.pending.get(c.keyId);
    if (prev) {
      // a tombstone right after its delete adds nothing, and would lose the delete's position
      if (c.kind === Kind.Delete && c.posTx < 0 && (prev.kind === Kind.Delete || prev.deletedTs !== undefined)) return;
      // the newer source position wins, not the later arrival: snapshot rows and streamed
      // changes interleave, and a stale event must not replace a newer pending one
      if (c.posTx >= 0 && prev.posTx >= 0 && (c.posTx < prev.posTx || (c.posTx === prev.posTx && c.pos < prev.pos))) return;
      // soft delete keeps the row: a delete of a row still pending writes that row, flagged
      if (c.kind === Kind.Delete && c.posTx >= 0 && prev.kind === Kind.Upsert && t.mapping.delete_mode === "soft")
        c = { ...prev, posTx: c.posTx, pos: c.pos, sourceTs: c.sourceTs, deletedTs: c.sourceTs, coord: c.coord, raw: c.raw };
      // an update with unchanged-TOAST columns keeps the values the pending change carries
      if (c.kind === Kind.Upsert && prev.kind === Kind.Upsert && c.cols!.length < prev.cols!.length) {
        const merged = new Map<string, string | null>();
        prev.cols!.forEach((col, i) => merged.set(col, prev.vals![i]!));
        c.cols!.forEach((col, i) => merged.set(col, c.vals![i]!));
        c.cols = [...merged.keys()];
        c.vals = [...merged.values()];
      }
      st.pending.delete(c.keyId);
    }
    st.pending.set(c.keyId, c);
  }

  deadLetter(d: DeadLetter): void {
    this.deadLetters.push(d);
  }

  get changeCount(): number {
    let n = 0;
    for (const st of this.tables.values()) n += st.pending.size;
    return n;
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
